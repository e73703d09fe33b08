package sip

import (
	"net/netip"
	"testing"
	"time"
)

// fakeCalls counts calls by source for the limits.
type fakeCalls map[netip.Addr]int

func (f fakeCalls) Count() int {
	n := 0
	for _, v := range f {
		n += v
	}
	return n
}

func (f fakeCalls) CountFrom(a netip.Addr) int { return f[a] }
func (f fakeCalls) CountPeer(string) int       { return 0 }
func (f fakeCalls) CountUser(string) int       { return 0 }

func TestCallLimits(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	now := time.Unix(1000, 0)
	tests := []struct {
		name      string
		l         *callLimits
		src       netip.Addr
		want      Limit
		wantRetry string
	}{
		{"no limits", newCallLimits(0, 0, 0, 0, 5*time.Second, fakeCalls{a: 100}), a, LimitUnknown, ""},
		{"under max_calls", newCallLimits(3, 0, 0, 0, 5*time.Second, fakeCalls{a: 1, b: 1}), a, LimitUnknown, ""},
		{"at max_calls", newCallLimits(2, 0, 0, 0, 5*time.Second, fakeCalls{a: 1, b: 1}), a, LimitCalls, "5"},
		{"at max_calls_per_source", newCallLimits(0, 1, 0, 0, 7*time.Second, fakeCalls{a: 1}), a, LimitCallsPerSource, "7"},
		{"another source", newCallLimits(0, 1, 0, 0, 7*time.Second, fakeCalls{a: 1}), b, LimitUnknown, ""},
		{"calls not counted", newCallLimits(1, 1, 0, 0, 5*time.Second, nil), a, LimitUnknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release, hit, retry := tt.l.admit(tt.src, now)
			if hit != tt.want || retry != tt.wantRetry {
				t.Fatalf("admit = %v %q, want %v %q", hit, retry, tt.want, tt.wantRetry)
			}
			if (release == nil) != (hit != LimitUnknown) {
				t.Errorf("release %v with hit %v", release != nil, hit)
			}
			if hit != LimitUnknown && tt.l.refused[hit].Load() != 1 {
				t.Errorf("refusal not counted")
			}
			if tt.l.pending.Load() != 0 {
				t.Errorf("pending = %d with no pending limit", tt.l.pending.Load())
			}
		})
	}
}

func TestCPSLimit(t *testing.T) {
	l := newCallLimits(0, 0, 10, 0, 5*time.Second, nil)
	src := netip.MustParseAddr("192.0.2.1")
	t0 := time.Unix(1000, 0)
	for i := range 10 {
		if _, hit, _ := l.admit(src, t0); hit != LimitUnknown {
			t.Fatalf("call %d of a burst of 10 at max_cps 10: %v", i+1, hit)
		}
	}
	if _, hit, retry := l.admit(src, t0); hit != LimitCPS || retry != "1" {
		t.Fatalf("11th call: %v Retry-After %q, want cps and 1", hit, retry)
	}
	if _, hit, _ := l.admit(src, t0.Add(100*time.Millisecond)); hit != LimitUnknown {
		t.Fatalf("100ms later (one token back): %v", hit)
	}
	// 10 a second for 5 seconds pass.
	for i := range 50 {
		if _, hit, _ := l.admit(src, t0.Add(time.Second+time.Duration(i)*100*time.Millisecond)); hit != LimitUnknown {
			t.Fatalf("call %d at the limit's rate: %v", i, hit)
		}
	}
}

// TestOverloadLimit: beyond max_pending_invites pending INVITEs a new one
// is refused at once; released ones make room, and releasing twice frees
// one slot only.
func TestOverloadLimit(t *testing.T) {
	l := newCallLimits(0, 0, 0, 3, 5*time.Second, nil)
	src := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	var held []func()
	for range 3 {
		r, hit, _ := l.admit(src, now)
		if hit != LimitUnknown {
			t.Fatalf("within the limit: %v", hit)
		}
		held = append(held, r)
	}
	if _, hit, retry := l.admit(src, now); hit != LimitOverload || retry != "5" {
		t.Fatalf("4th pending INVITE: %v %q, want overload, Retry-After 5", hit, retry)
	}
	held[0]()
	held[0]()
	if l.pending.Load() != 2 {
		t.Fatalf("pending = %d after one release (twice), want 2", l.pending.Load())
	}
	if _, hit, _ := l.admit(src, now); hit != LimitUnknown {
		t.Fatalf("after a release: %v", hit)
	}
	if _, hit, _ := l.admit(src, now); hit != LimitOverload {
		t.Fatalf("full again: %v", hit)
	}
	// A refusal by another limit gives its pending slot back.
	l2 := newCallLimits(1, 0, 0, 1, 5*time.Second, fakeCalls{src: 1})
	for range 5 {
		if _, hit, _ := l2.admit(src, now); hit != LimitCalls {
			t.Fatalf("want calls, got %v (pending %d)", hit, l2.pending.Load())
		}
	}
}
