package sip

import (
	"fmt"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// sipgo v1.7 keeps its transaction timers (T1, T2, T4 and the timers made
// from them) in package variables, read by every transaction it creates.
// Several proxies may run in one process (the test harness starts more
// than one), so the timers are set by the first and shared: a proxy asking
// for a different T1 while another runs is refused with an error that says
// why, instead of silently changing the other's timers (or racing them).
var timers struct {
	mu    sync.Mutex
	t1    time.Duration
	users int
}

// acquireTimers sets sipgo's timers for t1, or checks that the proxies
// already running use the same.
func acquireTimers(t1 time.Duration) error {
	timers.mu.Lock()
	defer timers.mu.Unlock()
	if timers.users > 0 && timers.t1 != t1 {
		return fmt.Errorf("sip.t1 = %v: another sipanchor in this process runs with t1 = %v, and sipgo's transaction timers are process-wide", t1, timers.t1)
	}
	if timers.users == 0 && timers.t1 != t1 {
		sip.SetTimers(t1, 8*t1, 10*t1)
		timers.t1 = t1
	}
	timers.users++
	return nil
}

// releaseTimers is acquireTimers undone, when a proxy stops.
func releaseTimers() {
	timers.mu.Lock()
	defer timers.mu.Unlock()
	timers.users--
}
