package sip

import (
	"testing"
	"time"
)

func TestNonceCountsRefuseReplays(t *testing.T) {
	now := time.Now()
	c := newNonceCounts()
	steps := []struct {
		nonce, nc string
		want      bool
	}{
		{"n1", "00000001", true},
		{"n1", "00000001", false}, // the same credential again
		{"n1", "00000002", true},
		{"n1", "00000001", false}, // an older one
		{"n2", "00000001", true},  // another nonce has its own count
		{"n3", "", true},          // no qop: good once
		{"n3", "", false},
		{"n4", "zz", false}, // not hex
		{"n4", "00000000", false},
	}
	for i, s := range steps {
		if got := c.accept(s.nonce, s.nc, now, now); got != s.want {
			t.Errorf("step %d (%s nc=%q): %v, want %v", i, s.nonce, s.nc, got, s.want)
		}
	}
	c.prune(now.Add(nonceLife + time.Second))
	if len(c.seen) != 0 {
		t.Errorf("%d nonces kept past their life", len(c.seen))
	}
}

func TestNonceCountsBounded(t *testing.T) {
	now := time.Now()
	c := newNonceCounts()
	c.max = 2
	c.accept("a", "1", now, now)
	c.accept("b", "1", now, now)
	if c.accept("c", "1", now, now) {
		t.Error("a third nonce was remembered past the bound")
	}
	if !c.accept("d", "1", now.Add(-nonceLife-time.Second), now.Add(time.Second)) && len(c.seen) > 2 {
		t.Error("table grew past its bound")
	}
}

// A nonce is bound to the source address it was issued to.
func TestNonceBoundToSource(t *testing.T) {
	a, err := newAuthenticator(nil, "example.test", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := a.nonce(time.Now(), "192.0.2.1")
	if st, _ := a.nonceState(n, "192.0.2.1"); st != 0 {
		t.Errorf("own source: state %d, want 0", st)
	}
	if st, _ := a.nonceState(n, "192.0.2.2"); st != -1 {
		t.Errorf("another source: state %d, want -1 (not ours)", st)
	}
}
