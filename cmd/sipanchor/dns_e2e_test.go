package main

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// silentDNS is a DNS server that reads queries and never answers.
type silentDNS struct {
	pc      net.PacketConn
	queries atomic.Int64
}

func startSilentDNS(t *testing.T) *silentDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentDNS{pc: pc}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			s.queries.Add(1)
		}
	}()
	return s
}

// TestHangingDNS: the DNS server for a route's host never answers. Calls
// routed by IP address and in-dialog requests are not held up; requests
// for the hanging name get 503 after a bounded wait, join the one lookup
// in flight instead of each starting their own, and queue nothing.
func TestHangingDNS(t *testing.T) {
	dns := startSilentDNS(t)
	pbxPort := freePort(t)
	p := startProxySIP(t, fmt.Sprintf("resolver = %q", dns.pc.LocalAddr().String()), fmt.Sprintf(`[[route]]
match = "sip:*@slow.test"
to = "sip:pbx.slow.test:%[1]d"

[[route]]
match = "sip:*@fast.test"
to = "sip:127.0.0.5:%[1]d"
`, pbxPort)+officePeer)
	pbx := newUAOn(t, "pbx", fmt.Sprintf("127.0.0.5:%d", pbxPort), p)
	alice := newUA(t, "alice", "127.0.0.2", p, "")

	// A burst of calls to the hanging name.
	const n = 10
	var cids []string
	start := time.Now()
	for range n {
		cids = append(cids, alice.inviteAs("sip:1@slow.test", "sip:alice@example.test", ""))
	}
	// Meanwhile a call routed by IP goes through at once.
	dc := alice.invite("sip:2@fast.test")
	inv := pbx.recv("INVITE routed by IP while DNS hangs", isRequest("INVITE")).(*sip.Request)
	if waited := time.Since(start); waited > 500*time.Millisecond {
		t.Errorf("the call routed by IP waited %v", waited)
	}
	dd := pbx.answer(inv, 200, "OK", "p1")
	ok := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	dc.confirmed(ok)
	alice.request(dc, "ACK")
	pbx.recv("ACK", isRequest("ACK"))
	pbx.request(dd, "BYE")
	alice.okTo(alice.recv("in-dialog BYE while DNS hangs", isRequest("BYE")))
	pbx.recv("200 to BYE", isResponse(200, "BYE"))

	pending := map[string]bool{}
	for _, cid := range cids {
		pending[cid] = true
	}
	for len(pending) > 0 { // in whatever order they come
		res := alice.recv("final responses to the calls to the hanging name", func(m sip.Message) bool {
			r, ok := m.(*sip.Response)
			return ok && r.StatusCode >= 200 && pending[string(*r.CallID())]
		}).(*sip.Response)
		delete(pending, string(*res.CallID()))
		if res.StatusCode != 503 {
			t.Errorf("call to the hanging name: %d, want 503", res.StatusCode)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the %d calls to the hanging name took %v to fail", n, took)
	}
	// One lookup (A and AAAA, with the resolver's own retries), not one per call.
	if q := dns.queries.Load(); q > 8 {
		t.Errorf("%d DNS queries for %d calls to one name: each call looked it up itself", q, n)
	}
}
