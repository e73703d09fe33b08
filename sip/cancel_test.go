package sip

import (
	"sync"
	"sync/atomic"
	"testing"
)

// The hook runs exactly once whether the CANCEL comes before, during or
// after it is set, and done() is closed once the CANCEL came.
func TestCancelWatchHookRunsOnce(t *testing.T) {
	for range 200 {
		w := &cancelWatch{ch: make(chan struct{})}
		var runs atomic.Int32
		var wg sync.WaitGroup
		wg.Go(func() { w.onCancel(func() { runs.Add(1) }) })
		wg.Go(w.fire)
		wg.Go(w.fire)
		wg.Wait()
		if n := runs.Load(); n != 1 {
			t.Fatalf("hook ran %d times", n)
		}
		if !w.cancelled() {
			t.Fatal("not cancelled after fire")
		}
	}
}

func TestCancelWatchWithoutCancel(t *testing.T) {
	w := &cancelWatch{ch: make(chan struct{})}
	ran := false
	w.onCancel(func() { ran = true })
	if ran || w.cancelled() {
		t.Fatal("hook ran or cancelled without a CANCEL")
	}
}
