package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestBehindShedsNewCallsOnly: when sipanchor falls behind (here: the
// process is stopped for 400 ms while requests arrive, as a burst of load
// or a long pause would leave it), the new INVITEs that waited longer than
// max_queue_delay are answered 503 with Retry-After at once, and never
// reach the callee; the BYE of a call in progress, queued with them, is
// still carried through, and so is the first new call after the backlog.
// The ACKs of those 503s are absorbed, not forwarded.
func TestBehindShedsNewCallsOnly(t *testing.T) {
	requireE2E(t)
	p := startProxy(t, "[limits]\nmax_queue_delay = \"100ms\"\nretry_after = \"3s\"\n")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	carol := newUA(t, "carol", "127.0.0.4", p, "")
	bob.register(600)
	dc, _ := call(t, alice, bob)

	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	var shed []*dlg
	for range 3 {
		shed = append(shed, carol.invite("sip:bob@example.test"))
	}
	alice.request(dc, "BYE")
	// The stop is the load being simulated, not a wait for something.
	time.Sleep(400*time.Millisecond - time.Since(stopped))
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	for _, d := range shed {
		r := carol.recv("503 for "+d.callID, func(m sip.Message) bool {
			r, ok := m.(*sip.Response)
			return ok && r.StatusCode >= 200 && string(*r.CallID()) == d.callID
		}).(*sip.Response)
		want503(t, "an INVITE that waited 400 ms", r, "3")
		if !strings.Contains(r.To().Value(), "tag=") {
			t.Errorf("503 without a To tag: %s", r.To().Value())
		}
		carol.send(string(ackFor(d.peer, r.String())))
	}
	bob.okTo(bob.recv("BYE of the call in progress", isRequest("BYE")))
	alice.recv("200 for the BYE", isResponse(200, "BYE"))
	bob.quiet("shed INVITE or its ACK", time.Second, func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && (r.Method == sip.INVITE || r.Method == sip.ACK)
	})
	m := p.metricsText()
	if n := series(m, `sipanchor_sip_limited_total{limit="queue"}`); n != 3 {
		t.Errorf("limited{queue} = %v, want 3", n)
	}
	// The 503s' ACKs end at the read filter, like the 503s began: only
	// the call's own ACK reached the transaction layer.
	if n := requestsCounted(m, "ACK"); n != 1 {
		t.Errorf("%d ACKs counted, want the call's 1: the 503s' ACKs went past the read filter", n)
	}
	if c := len(p.logLines("behind: new calls answered 503")); c != 1 {
		t.Errorf("logged %d times, want once", c)
	}

	// Caught up: the next call is put through.
	carol.invite("sip:bob@example.test")
	bob.recv("a new call after the backlog", isRequest("INVITE"))
}
