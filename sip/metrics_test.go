package sip

import (
	"fmt"
	"testing"
	"time"
)

// TestMetricsMethodsBounded: a stranger sending requests with ever new
// extension methods (valid tokens, RFC 3261 §7.1) must not grow the
// metrics without bound: methods sipanchor does not know are counted as
// "other".
func TestMetricsMethodsBounded(t *testing.T) {
	m := newMetrics()
	for i := range 10000 {
		meth := fmt.Sprintf("X-%d", i)
		m.request(meth)
		m.final(meth, 405, time.Millisecond)
	}
	m.request("INVITE")
	m.final("INVITE", 200, time.Millisecond)
	s := m.Snapshot()
	if len(s.Requests) != 2 || s.Requests["other"] != 10000 || s.Requests["INVITE"] != 1 {
		t.Errorf("requests by method: %d keys, other=%d", len(s.Requests), s.Requests["other"])
	}
	if len(s.Responses) != 2 || len(s.Tx) != 2 {
		t.Errorf("%d response series and %d histograms, want 2 and 2", len(s.Responses), len(s.Tx))
	}
}
