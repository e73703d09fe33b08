package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sipanchor/relay/ng"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
)

// cancel sends the CANCEL of the last INVITE u sent in dialog d.
func (u *ua) cancel(d *dlg) {
	u.t.Helper()
	u.send(fmt.Sprintf("CANCEL %s SIP/2.0\n%s\nMax-Forwards: 70\nFrom: <%s>;tag=%s\nTo: <%s>\nCall-ID: %s\nCSeq: 1 CANCEL\n\n",
		d.peer, u.via(strings.TrimPrefix(u.lastInviteBranch, "z9hG4bK")), d.local, d.localTag, d.peer, d.callID))
}

// respondTagged answers an initial INVITE with a provisional or final
// response carrying toTag, body (none when empty) and extra header lines
// ("Name: value").
func (u *ua) respondTagged(inv *sip.Request, code int, reason, toTag, body string, extra ...string) {
	u.t.Helper()
	res := sip.NewResponseFromRequest(inv, code, reason, nil)
	res.To().Params.Remove("tag")
	res.To().Params.Add("tag", toTag)
	res.AppendHeader(sip.NewHeader("Contact", strings.TrimPrefix(u.contactHdr(), "Contact: ")))
	for _, h := range extra {
		name, value, _ := strings.Cut(h, ": ")
		res.AppendHeader(sip.NewHeader(name, value))
	}
	if body != "" {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	res.SetBody(nil)
	u.reply(res, body)
}

// stream sends RTP from r to dst every 2 ms, each packet numbered, until
// the test ends; sent is the number of the last packet sent.
func (r *rtpPeer) stream(dst string, mark byte) *atomic.Uint32 {
	var sent atomic.Uint32
	stop := make(chan struct{})
	done := make(chan struct{})
	addr, _ := net.ResolveUDPAddr("udp", dst)
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for n := uint32(1); ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: n * 160, SSRC: 42}, Payload: make([]byte, 160)}
			p.Payload[0] = mark
			binary.BigEndian.PutUint32(p.Payload[1:], n)
			b, _ := p.Marshal()
			sent.Store(n) // before the send: a packet numbered n may be on its way
			_, _ = r.conn.WriteToUDP(b, addr)
		}
	}()
	r.t.Cleanup(func() { close(stop); <-done })
	return &sent
}

// noneAfter asserts that no packet carrying mark and numbered above n
// arrives within d (packets numbered n or below were sent earlier and may
// still be in flight).
func (r *rtpPeer) noneAfter(mark byte, n uint32, d time.Duration) {
	r.t.Helper()
	var got uint32
	late := func(p *rtp.Packet, _ netip.AddrPort) bool {
		if len(p.Payload) < 5 || p.Payload[0] != mark {
			return false
		}
		got = binary.BigEndian.Uint32(p.Payload[1:])
		return got > n
	}
	if _, ok := r.scan(d, late); ok {
		r.t.Fatalf("early media packet %d relayed after the final response (packets up to %d were sent before it)", got, n)
	}
}

// TestCancelStopsEarlyMediaBeforeFinalResponse: the callee streams early
// media after a 183; the caller CANCELs. By the time the caller holds its
// 487 the relay session is gone, even while the callee is slow to answer
// the CANCEL: no packet the callee sends after that reaches the caller.
func TestCancelStopsEarlyMediaBeforeFinalResponse(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	dc := alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	toBob := mediaOf(t, inv.Body())
	bob.respondTagged(inv, 183, "Session Progress", "b1", sdpWith(bRTP.port(), ""))
	alice.recv("183", isResponse(183, "INVITE"))
	sent := bRTP.stream(toBob.String(), 'e')
	if !aRTP.within('e', 2*time.Second) {
		t.Fatal("no early media before the CANCEL")
	}

	alice.cancel(dc)
	alice.recv("200 to CANCEL", isResponse(200, "CANCEL"))
	alice.recv("487", isResponse(487, "INVITE"))
	last := sent.Load()
	// The callee has not answered the CANCEL yet and keeps streaming.
	aRTP.noneAfter('e', last, 400*time.Millisecond)

	bob.okTo(bob.recv("CANCEL", isRequest("CANCEL")))
	bob.respondTagged(inv, 487, "Request Terminated", "b1", "")
	bob.recv("ACK of 487", isRequest("ACK"))
	p.waitIdle("after CANCEL")
}

// slowNG is a stand-in rtpengine that holds each offer until the test
// releases it: it makes the window between an INVITE's arrival and its
// forwarding as long as the test needs.
type slowNG struct {
	pc      net.PacketConn
	offers  chan struct{} // one value per offer received
	release chan struct{} // closed to let offers through
}

func startSlowNG(t *testing.T) *slowNG {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &slowNG{pc: pc, offers: make(chan struct{}, 16), release: make(chan struct{})}
	t.Cleanup(func() { pc.Close() })
	go s.serve()
	return s
}

func (s *slowNG) addr() string { return s.pc.LocalAddr().String() }

func (s *slowNG) serve() {
	buf := make([]byte, 65536)
	for {
		n, src, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		cookie, d, err := ng.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		go s.answer(cookie, d, src)
	}
}

func (s *slowNG) answer(cookie string, d map[string]any, src net.Addr) {
	reply := map[string]any{"result": "ok"}
	switch d["command"] {
	case "ping":
		reply["result"] = "pong"
	case "offer", "answer":
		if d["command"] == "offer" {
			s.offers <- struct{}{}
			<-s.release
		}
		reply["sdp"] = d["sdp"]
	}
	if b, err := ng.Message(cookie, reply); err == nil {
		_, _ = s.pc.WriteTo(b, src)
	}
}

// TestCancelDuringRelayOffer: a CANCEL that arrives while the INVITE is
// still being prepared (here: its relay offer is slow) is not lost. The
// callee is never left ringing: it gets no INVITE, or the INVITE and then
// a CANCEL.
func TestCancelDuringRelayOffer(t *testing.T) {
	slow := startSlowNG(t)
	p := startProxy(t, fmt.Sprintf("[relay]\nengine = \"rtpengine\"\nrtpengine_tout = \"10s\"\nrtpengine_retr = 1\n\n[[relay.set]]\nid = 0\nnodes = [\"udp:%s=1\"]\n", slow.addr()))
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	dc := alice.inviteSDP("sip:bob@example.test", sdpWith(4000, ""))
	alice.recv("100 Trying", isResponse(100, "INVITE"))
	select {
	case <-slow.offers:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay was never offered the call")
	}
	alice.cancel(dc)
	alice.recv("200 to CANCEL", isResponse(200, "CANCEL"))
	alice.recv("487", isResponse(487, "INVITE"))
	close(slow.release)

	deadline := time.After(3 * time.Second)
	for invited := false; ; {
		select {
		case m, ok := <-bob.in:
			if !ok {
				t.Fatal("bob's socket closed")
			}
			r, isReq := m.(*sip.Request)
			switch {
			case isReq && r.Method == sip.INVITE:
				invited = true
				bob.respondTagged(r, 180, "Ringing", "b1", "")
			case isReq && r.Method == sip.CANCEL:
				return // cancelled: not left ringing
			}
		case <-deadline:
			if invited {
				t.Fatal("bob was invited after the caller's CANCEL and never cancelled: he rings until timer C")
			}
			return
		}
	}
}
