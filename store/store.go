// Package store owns sipanchor's one SQLite schema: it opens the database
// file and brings it to the newest schema version this binary knows,
// through an ordered list of numbered migrations. Other packages keep
// their queries but create no tables: they use the ones made here.
package store

import (
	"context"
	"database/sql"
	"fmt"

	_ "modernc.org/sqlite" // the "sqlite" driver, pure Go
)

// Open opens the SQLite file at path in WAL mode (readers do not block the
// writer, and a second process, sipanchor ctl, can use it alongside) and
// migrates it. A file written by a newer sipanchor is refused with
// ErrNewerSchema.
func Open(ctx context.Context, path string) (*sql.DB, error) { return OpenSync(ctx, path, SyncNormal) }

// Sync is how hard a commit waits for the disk.
type Sync string

const (
	// SyncNormal: a commit is in the WAL file when it returns, so it
	// survives the process being killed (kill -9); a power loss may take
	// the last commits since the WAL was last synced.
	SyncNormal Sync = "normal"
	// SyncFull: each commit is fsynced; it survives a power loss too, at
	// the cost of a disk flush per commit (group commit shares it).
	SyncFull Sync = "full"
)

// OpenSync is Open with the commit durability chosen.
func OpenSync(ctx context.Context, path string, sync Sync) (*sql.DB, error) {
	mode := "NORMAL"
	if sync == SyncFull {
		mode = "FULL"
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(" + mode + ")"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// SQLite has one writer at a time. One connection serialises our
	// writes in Go instead of in busy-waits: under load, a pool grew a
	// connection per waiting writer, and the descriptors of those whose
	// open failed with "database is locked" were never closed.
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := Migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}
