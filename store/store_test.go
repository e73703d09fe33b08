package store

import (
	"context"
	"path/filepath"
	"testing"
)

func TestOpenSyncModes(t *testing.T) {
	for _, tc := range []struct {
		sync Sync
		want int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{{SyncNormal, 1}, {SyncFull, 2}} {
		db, err := OpenSync(context.Background(), filepath.Join(t.TempDir(), "s.db"), tc.sync)
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := db.QueryRow(`PRAGMA synchronous`).Scan(&got); err != nil || got != tc.want {
			t.Errorf("sync %s: PRAGMA synchronous = %d (%v), want %d", tc.sync, got, err, tc.want)
		}
		db.Close()
	}
}
