package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// oldSchema is what sipanchor created before schema versions, table by
// table where it was (sip/location.go, sip/auth.go, dialog/store.go,
// relay/ng/store.go), with no schema_version table.
const oldSchema = `
CREATE TABLE location (
	aor TEXT NOT NULL, contact TEXT NOT NULL, expires INTEGER NOT NULL, q REAL NOT NULL,
	call_id TEXT NOT NULL, cseq INTEGER NOT NULL, received TEXT NOT NULL, transport TEXT NOT NULL,
	local TEXT NOT NULL, user_agent TEXT NOT NULL, nat INTEGER NOT NULL,
	PRIMARY KEY (aor, contact));
CREATE TABLE users (
	username TEXT NOT NULL, domain TEXT NOT NULL, realm TEXT NOT NULL,
	ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL,
	PRIMARY KEY (username, domain));
CREATE TABLE dialogs (call_id TEXT NOT NULL, from_tag TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (call_id, from_tag));
CREATE TABLE calls (
	id INTEGER PRIMARY KEY, call_id TEXT NOT NULL, from_tag TEXT NOT NULL, caller TEXT NOT NULL,
	callee TEXT NOT NULL, started INTEGER NOT NULL, answered INTEGER, ended INTEGER NOT NULL,
	reason TEXT NOT NULL, engaged INTEGER NOT NULL, media TEXT);
CREATE TABLE relay_nodes (set_id INTEGER NOT NULL, socket TEXT NOT NULL, PRIMARY KEY (set_id, socket));
CREATE TABLE rtpengine_calls (
	call_id TEXT NOT NULL, from_tag TEXT NOT NULL, set_id INTEGER NOT NULL, node TEXT NOT NULL,
	PRIMARY KEY (call_id, from_tag));
INSERT INTO location VALUES ('bob@example.test', 'sip:bob@127.0.0.3:5060', 4102444800, 1, 'c1', 1, '127.0.0.3:5060', 'udp', 'udp:127.0.0.1:5060', 'ua', 0);
INSERT INTO users VALUES ('bob', 'example.test', 'example.test', 'x', 'y');
INSERT INTO dialogs VALUES ('c2', 'ft', '{}');
INSERT INTO calls (call_id, from_tag, caller, callee, started, ended, reason, engaged) VALUES ('c3', 'ft', 'a', 'b', 1, 2, 'bye', 1);
INSERT INTO relay_nodes VALUES (0, 'udp:127.0.0.1:2223');
INSERT INTO rtpengine_calls VALUES ('c2', 'ft', 0, 'udp:127.0.0.1:2223');
`

var tables = []string{"calls", "dialogs", "location", "relay_nodes", "rtpengine_calls", "schema_version", "users"}

func rawDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "t.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func version(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRow(`SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return 0
		}
		t.Fatal(err)
	}
	return v
}

func tableNames(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func count(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	newest := len(migrations)
	failing := append(slices.Clone(migrations),
		migration{newest + 1, "half done", `CREATE TABLE half (x INTEGER); INSERT INTO half VALUES (1); INSERT INTO nowhere VALUES (1)`})
	tests := []struct {
		name        string
		setup       func(t *testing.T, db *sql.DB)
		ms          []migration
		wantErr     error  // errors.Is
		wantMsg     string // substring of the error
		wantVersion int
		check       func(t *testing.T, db *sql.DB)
	}{
		{
			name:        "fresh file",
			ms:          migrations,
			wantVersion: newest,
			check: func(t *testing.T, db *sql.DB) {
				if got := tableNames(t, db); !slices.Equal(got, tables) {
					t.Errorf("tables = %v, want %v", got, tables)
				}
			},
		},
		{
			name:        "file from sipanchor before schema versions keeps its rows",
			setup:       func(t *testing.T, db *sql.DB) { exec(t, db, oldSchema) },
			ms:          migrations,
			wantVersion: newest,
			check: func(t *testing.T, db *sql.DB) {
				if got := tableNames(t, db); !slices.Equal(got, tables) {
					t.Errorf("tables = %v, want %v", got, tables)
				}
				for _, tb := range tables {
					if n := count(t, db, tb); n != 1 && tb != "schema_version" {
						t.Errorf("%s has %d rows after the upgrade, want 1", tb, n)
					}
				}
				var branch sql.NullString
				if err := db.QueryRow(`SELECT invite_branch FROM calls WHERE call_id = 'c3' AND from_tag = 'ft'`).Scan(&branch); err != nil || branch.Valid {
					t.Errorf("old call record's invite_branch: %v %v, want NULL", branch, err)
				}
			},
		},
		{
			name:        "file with only some old tables gets the rest",
			setup:       func(t *testing.T, db *sql.DB) { exec(t, db, strings.SplitAfter(oldSchema, ";")[1]) }, // users only
			ms:          migrations,
			wantVersion: newest,
			check: func(t *testing.T, db *sql.DB) {
				if got := tableNames(t, db); !slices.Equal(got, tables) {
					t.Errorf("tables = %v, want %v", got, tables)
				}
			},
		},
		{
			name: "newer schema refused",
			setup: func(t *testing.T, db *sql.DB) {
				if err := migrate(ctx, db, migrations); err != nil {
					t.Fatal(err)
				}
				exec(t, db, `INSERT INTO schema_version (version, name, applied) VALUES (?, 'from the future', 0)`, len(migrations)+1)
			},
			ms:          migrations,
			wantErr:     ErrNewerSchema,
			wantMsg:     fmt.Sprintf("store was written by a newer sipanchor (schema %d, this one knows %d)", newest+1, newest),
			wantVersion: newest + 1,
		},
		{
			name: "migrating twice changes nothing",
			setup: func(t *testing.T, db *sql.DB) {
				if err := migrate(ctx, db, migrations); err != nil {
					t.Fatal(err)
				}
				exec(t, db, `UPDATE schema_version SET applied = 7`)
				exec(t, db, `INSERT INTO relay_nodes VALUES (0, 'udp:127.0.0.1:2223')`)
			},
			ms:          migrations,
			wantVersion: newest,
			check: func(t *testing.T, db *sql.DB) {
				var n, applied int
				if err := db.QueryRow(`SELECT count(*), MAX(applied) FROM schema_version`).Scan(&n, &applied); err != nil {
					t.Fatal(err)
				}
				if n != newest || applied != 7 {
					t.Errorf("schema_version: %d rows, applied %d; want the %d rows of the first run (applied 7)", n, applied, newest)
				}
				if n := count(t, db, "relay_nodes"); n != 1 {
					t.Errorf("relay_nodes has %d rows, want 1", n)
				}
			},
		},
		{
			name:        "failing migration rolls back and leaves the version",
			ms:          failing,
			wantMsg:     fmt.Sprintf("schema migration %d (half done)", newest+1),
			wantVersion: newest,
			check: func(t *testing.T, db *sql.DB) {
				if slices.Contains(tableNames(t, db), "half") {
					t.Error("table of the failed migration is there")
				}
				// Fixed, the next start applies it.
				fixed := append(slices.Clone(migrations), migration{newest + 1, "half done", `CREATE TABLE half (x INTEGER)`})
				if err := migrate(ctx, db, fixed); err != nil {
					t.Fatal(err)
				}
				if v := version(t, db); v != newest+1 {
					t.Errorf("version after the fixed migration = %d, want %d", v, newest+1)
				}
			},
		},
		{
			name:        "gap in the numbering refused",
			ms:          []migration{{1, "a", `CREATE TABLE a (x)`}, {3, "c", `CREATE TABLE c (x)`}},
			wantMsg:     `migration "c" numbered 3, want 2`,
			wantVersion: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := rawDB(t)
			if tt.setup != nil {
				tt.setup(t, db)
			}
			err := migrate(ctx, db, tt.ms)
			switch {
			case tt.wantErr == nil && tt.wantMsg == "" && err != nil:
				t.Fatalf("migrate: %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("migrate: %v, want %v", err, tt.wantErr)
			case tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)):
				t.Fatalf("migrate: %v, want an error with %q", err, tt.wantMsg)
			}
			if v := version(t, db); v != tt.wantVersion {
				t.Errorf("version = %d, want %d", v, tt.wantVersion)
			}
			if tt.check != nil {
				tt.check(t, db)
			}
		})
	}
}

// TestOpen: Open makes a usable store with today's pragmas and refuses one
// from a newer sipanchor, naming both versions.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sipanchor.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q (%v), want wal", mode, err)
	}
	if got := tableNames(t, db); !slices.Equal(got, tables) {
		t.Errorf("tables = %v, want %v", got, tables)
	}
	exec(t, db, `INSERT INTO schema_version (version, name, applied) VALUES (5, 'from the future', 0)`)
	db.Close()

	db, err = Open(ctx, path)
	if err == nil {
		db.Close()
		t.Fatal("Open of a store from a newer sipanchor succeeded")
	}
	if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), fmt.Sprintf("(schema 5, this one knows %d)", len(migrations))) {
		t.Errorf("Open: %v", err)
	}
}
