package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migration is one numbered step of the schema. Versions count up from 1
// without gaps; a released migration is never edited, only followed.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations is the schema, oldest first.
var migrations = []migration{
	{1, "tables of sipanchor before schema versions", schemaV1},
	{2, "calls: the INVITE's Via branch, found by call", schemaV2},
}

// schemaV1 is every table as sipanchor created it before it had schema
// versions, IF NOT EXISTS so that such a file upgrades as it is.
//   - location: the registrar's bindings;
//   - users: digest credentials, HA1 per algorithm (no passwords);
//   - dialogs: each confirmed dialog, rewritten when its state changes, so
//     that after a restart its BYE still frees the relay and sipanchor can
//     still end it with well-formed BYEs;
//   - calls: one call record per ended dialog, with its media totals;
//   - relay_nodes: rtpengine nodes from the database, one row per node;
//   - rtpengine_calls: which node holds each call, so that a restarted
//     sipanchor sends a call's re-offers and its delete to that node.
const schemaV1 = `
CREATE TABLE IF NOT EXISTS location (
	aor        TEXT    NOT NULL,
	contact    TEXT    NOT NULL,
	expires    INTEGER NOT NULL, -- unix seconds
	q          REAL    NOT NULL,
	call_id    TEXT    NOT NULL,
	cseq       INTEGER NOT NULL,
	received   TEXT    NOT NULL,
	transport  TEXT    NOT NULL,
	local      TEXT    NOT NULL,
	user_agent TEXT    NOT NULL,
	nat        INTEGER NOT NULL,
	PRIMARY KEY (aor, contact)
);
CREATE TABLE IF NOT EXISTS users (
	username   TEXT NOT NULL,
	domain     TEXT NOT NULL,
	realm      TEXT NOT NULL,
	ha1_md5    TEXT NOT NULL,
	ha1_sha256 TEXT NOT NULL,
	PRIMARY KEY (username, domain)
);
CREATE TABLE IF NOT EXISTS dialogs (
	call_id  TEXT NOT NULL,
	from_tag TEXT NOT NULL,
	data     TEXT NOT NULL, -- JSON: parties, branch, flags, accepted SDPs, engine state
	PRIMARY KEY (call_id, from_tag)
);
CREATE TABLE IF NOT EXISTS calls (
	id       INTEGER PRIMARY KEY,
	call_id  TEXT    NOT NULL,
	from_tag TEXT    NOT NULL,
	caller   TEXT    NOT NULL,
	callee   TEXT    NOT NULL,
	started  INTEGER NOT NULL, -- unix milliseconds
	answered INTEGER,          -- unix milliseconds, NULL if never answered
	ended    INTEGER NOT NULL,
	reason   TEXT    NOT NULL,
	engaged  INTEGER NOT NULL,
	media    TEXT              -- JSON: per-stream, per-leg packet/byte/loss/jitter totals
);
CREATE TABLE IF NOT EXISTS relay_nodes (
	set_id INTEGER NOT NULL,
	socket TEXT    NOT NULL, -- "udp:HOST:PORT[=WEIGHT]"
	PRIMARY KEY (set_id, socket)
);
CREATE TABLE IF NOT EXISTS rtpengine_calls (
	call_id  TEXT    NOT NULL,
	from_tag TEXT    NOT NULL,
	set_id   INTEGER NOT NULL,
	node     TEXT    NOT NULL, -- the node's name, "udp:HOST:PORT"
	PRIMARY KEY (call_id, from_tag)
)`

// schemaV2 lets a restarted sipanchor tell the ACK of a final response
// its old process sent (RFC 3261 §17.1.1.3: it carries the INVITE's Via
// branch) from the ACK of a 2xx, which must be routed on: each call
// record keeps the caller's Via branch of its INVITE (NULL in older
// records), and calls are found by Call-ID without reading them all.
const schemaV2 = `
ALTER TABLE calls ADD COLUMN invite_branch TEXT;
CREATE INDEX calls_by_call_id ON calls (call_id, from_tag)`

// versionTable records each applied migration; the schema version is the
// highest. A file without it (sipanchor before versions, or new) is 0.
const versionTable = `
CREATE TABLE IF NOT EXISTS schema_version (
	version INTEGER PRIMARY KEY,
	name    TEXT    NOT NULL,
	applied INTEGER NOT NULL -- unix seconds
)`

// Migrate brings db to the newest schema version, one migration per
// transaction; running it again changes nothing. It refuses a file whose
// version is newer than this binary knows, with ErrNewerSchema.
func Migrate(ctx context.Context, db *sql.DB) error {
	return migrate(ctx, db, migrations)
}

func migrate(ctx context.Context, db *sql.DB, ms []migration) error {
	for i, m := range ms {
		if m.version != i+1 {
			return fmt.Errorf("migration %q numbered %d, want %d", m.name, m.version, i+1)
		}
	}
	// One connection for all steps: BEGIN and COMMIT are statements on it.
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for {
		done, err := step(ctx, conn, ms)
		if err != nil || done {
			return err
		}
	}
}

// step applies the next migration in one transaction and reports whether
// there was none left. BEGIN IMMEDIATE takes the write lock before the
// version is read, so a second process (ctl beside serve) migrating at the
// same time waits, then finds the step done.
func step(ctx context.Context, conn *sql.Conn, ms []migration) (done bool, err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return false, fmt.Errorf("schema: %w", err)
	}
	defer func() {
		if err != nil || done {
			// Also after a commit failure: SQLite may leave the transaction open.
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if _, err := conn.ExecContext(ctx, versionTable); err != nil {
		return false, fmt.Errorf("schema_version table: %w", err)
	}
	var v int
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return false, fmt.Errorf("schema version: %w", err)
	}
	switch {
	case v > len(ms):
		return false, fmt.Errorf("%w (schema %d, this one knows %d)", ErrNewerSchema, v, len(ms))
	case v == len(ms):
		return true, nil
	}
	m := ms[v]
	if _, err := conn.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("schema migration %d (%s): %w", m.version, m.name, err)
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)`,
		m.version, m.name, time.Now().Unix()); err != nil {
		return false, fmt.Errorf("schema migration %d: %w", m.version, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return false, fmt.Errorf("schema migration %d: commit: %w", m.version, err)
	}
	return false, nil
}
