package dialog

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sipanchor/relay"
	"sipanchor/relay/relaytest"
	"sipanchor/store"
)

// BenchmarkPersistNow measures "durable before visible": how long a
// confirmed dialog's save waits for its commit, with 8 calls committing
// at once (group commit), and reports p50/p99 per save.
func BenchmarkPersistNow(b *testing.B) {
	for _, mode := range []store.Sync{store.SyncNormal, store.SyncFull} {
		b.Run(string(mode), func(b *testing.B) {
			db, err := store.OpenSync(context.Background(), filepath.Join(b.TempDir(), "b.db"), mode)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			m := NewManager(relaytest.New(), Config{Engage: EngageNever, Caller: relay.DefaultLegFlags(), Callee: relay.DefaultLegFlags(), DB: db})
			defer m.Close()
			var mu sync.Mutex
			var n atomic.Int64
			var lat []time.Duration
			b.SetParallelism(4) // 4 × GOMAXPROCS savers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				d := m.Begin(InviteInfo{CallID: fmt.Sprint("bench-", n.Add(1)), FromTag: "f", CSeq: 1})
				d.state = StateConfirmed // each saver its own call, as in real traffic
				for pb.Next() {
					t0 := time.Now()
					d.mu.Lock()
					m.persistNow(d)
					d.mu.Unlock()
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
			})
			b.StopTimer()
			slices.Sort(lat)
			if n := len(lat); n > 0 {
				b.ReportMetric(float64(lat[n/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[n*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
