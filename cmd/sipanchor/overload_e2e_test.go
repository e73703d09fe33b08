package main

import (
	"fmt"
	"strconv"
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
		ackNon2xx(carol, d, r)
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

// ackNon2xx sends the ACK of a non-2xx final response r to d's INVITE (RFC
// 3261 §17.1.1.3: same branch, the response's To).
func ackNon2xx(u *ua, d *dlg, r *sip.Response) {
	u.send(fmt.Sprintf(`ACK %[1]s SIP/2.0
%[2]s
Max-Forwards: 70
From: <%[3]s>;tag=%[4]s
To: %[5]s
Call-ID: %[6]s
CSeq: 1 ACK
Content-Length: 0

`, d.peer, "Via: "+r.Via().Value(), d.local, d.localTag, r.To().Value(), d.callID))
}

// series is the value of one labelled series in a /metrics text, or -1.
func series(metrics, name string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
