package sip

import (
	"net"
	"testing"
)

// TestPickSRV: only the lowest priority is chosen from, in proportion to
// weight (RFC 2782); all-zero weights share evenly.
func TestPickSRV(t *testing.T) {
	srvs := []*net.SRV{
		{Target: "backup.", Priority: 20, Weight: 100},
		{Target: "a.", Priority: 10, Weight: 3},
		{Target: "b.", Priority: 10, Weight: 1},
	}
	got := map[string]int{}
	for range 4000 {
		got[pickSRV(srvs).Target]++
	}
	if got["backup."] != 0 {
		t.Errorf("a priority-20 record chosen %d times while priority 10 exists", got["backup."])
	}
	// 3:1 expected: 3000/1000; the bounds are ~10 standard deviations.
	if got["a."] < 2700 || got["a."] > 3300 {
		t.Errorf("weights 3:1 chose %v", got)
	}
	zero := []*net.SRV{{Target: "x.", Priority: 1}, {Target: "y.", Priority: 1}}
	got = map[string]int{}
	for range 2000 {
		got[pickSRV(zero).Target]++
	}
	if got["x."] < 800 || got["y."] < 800 {
		t.Errorf("zero weights chose %v", got)
	}
}
