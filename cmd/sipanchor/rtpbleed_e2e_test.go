package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// attacker is a host that knows a call's relay ports (they are in the SDP,
// and easy to guess in a port range) and sprays them, hoping the relay
// latches onto it and sends it the call's media: RTP Bleed
// (CVE-2017-14114).
type attacker struct {
	t    *testing.T
	conn *net.UDPConn
	sent int
}

func newAttacker(t *testing.T, ip string) *attacker {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &attacker{t: t, conn: c}
}

// spray sends n RTP-looking packets to the RTP and RTCP port of each
// relay address.
func (a *attacker) spray(n int, relays ...netip.AddrPort) {
	a.t.Helper()
	pkt := []byte{0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0x66, 'X', 'X', 'X', 'X'}
	for range n {
		for _, r := range relays {
			for _, port := range []uint16{r.Port(), r.Port() + 1} {
				if _, err := a.conn.WriteToUDPAddrPort(pkt, netip.AddrPortFrom(r.Addr(), port)); err != nil {
					a.t.Fatal(err)
				}
				a.sent++
			}
		}
	}
}

// gotNothing asserts that nothing has reached the attacker, ever: the
// kernel keeps what arrived since the socket opened, so a read that
// finds nothing within d means nothing came.
func (a *attacker) gotNothing(d time.Duration) {
	a.t.Helper()
	buf := make([]byte, 2048)
	_ = a.conn.SetReadDeadline(time.Now().Add(d))
	if n, src, err := a.conn.ReadFromUDPAddrPort(buf); err == nil {
		a.t.Fatalf("the attacker received a %d-byte packet from %s: the call's media leaks", n, src)
	}
}

// unexpectedDropped reads sipanchor_relay_dropped_total{reason="unexpected_source"}, or -1.
func (p *proxy) unexpectedDropped() int {
	return int(series(p.metricsText(), `sipanchor_relay_dropped_total{reason="unexpected_source"}`))
}

// TestRTPBleedAttackerGetsNothing: an attacker on 127.0.0.66 sprays every
// relay port of an anchored call (both sides, RTP and RTCP) before the
// phones' first packets and again once they talk. It receives nothing,
// the phones keep two-way media, and every sprayed packet is counted as
// dropped from an unexpected source.
func TestRTPBleedAttackerGetsNothing(t *testing.T) {
	p := startProxy(t, "")
	c := setupAnchoredCall(t, p)
	evil := newAttacker(t, "127.0.0.66")

	evil.spray(5, c.toAlice, c.toBob) // before either phone has sent
	evil.gotNothing(300 * time.Millisecond)
	eventually(t, 2*time.Second, func() bool { return p.unexpectedDropped() == evil.sent },
		"sprayed %d packets; unexpected_source drops never reached that", evil.sent)
	c.twoWay(t, 'a')

	evil.spray(5, c.toAlice, c.toBob) // while they talk
	c.twoWay(t, 'k')
	evil.gotNothing(300 * time.Millisecond)
	eventually(t, 2*time.Second, func() bool { return p.unexpectedDropped() == evil.sent },
		"sprayed %d packets; unexpected_source drops never reached that", evil.sent)
	if caller, _ := p.latched(c.dc.callID); caller != fmt.Sprintf("127.0.0.2:%d", c.aRTP.port()) {
		t.Errorf("caller's side latched on %s, want alice's RTP socket", caller)
	}
	diag := fmt.Sprint(p.session(c.dc.callID).Diagnosis)
	if !regexp.MustCompile(`packets from a stranger to caller's port dropped: 10 \(10 from an IP caller is not expected to send from\)`).MatchString(diag) {
		t.Errorf("diagnosis does not show the attacker's packets: %s", diag)
	}
}

// TestRTPBleedReinviteNoHijack: after a re-INVITE moves alice's media, the
// attacker's packets, sent before hers, do not take her place.
func TestRTPBleedReinviteNoHijack(t *testing.T) {
	p := startProxy(t, "")
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	evil := newAttacker(t, "127.0.0.66")

	moved := newRTP(t, "127.0.0.2")
	_, atAlice := reinvite(t, c.alice, c.dc, c.bob, sdpWith(moved.port(), ""), sdpWith(c.bRTP.port(), ""), "")
	toAlice := mediaOf(t, atAlice)

	evil.spray(5, toAlice, c.toBob)
	evil.gotNothing(300 * time.Millisecond)
	c.bRTP.sendTo(c.toBob, 'b')
	moved.recv('b') // to her new SDP address, not to the attacker
	moved.sendTo(toAlice, 'c')
	c.bRTP.recv('c')
	c.bRTP.sendTo(c.toBob, 'd')
	moved.recv('d')
	evil.gotNothing(100 * time.Millisecond)
}

// latched reads where each side of a call's first stream is latched, from
// GET /api/v1/sessions/{callID}.
func (p *proxy) latched(callID string) (caller, callee string) {
	p.t.Helper()
	resp, err := http.Get(p.api + "/api/v1/sessions/" + callID)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s struct {
		Streams []struct {
			Caller, Callee struct {
				Latched string `json:"latched"`
			}
		} `json:"streams"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || len(s.Streams) == 0 {
		p.t.Fatalf("GET session %s: %v, %+v", callID, err, s)
	}
	return s.Streams[0].Caller.Latched, s.Streams[0].Callee.Latched
}

// TestRTPBleedStrictThroughRealNAT: in strict mode (the default) a UA
// behind a real NAT (MASQUERADE --random: its RTP comes from the NAT's
// address, as its SIP does, on a port its SDP never named) still latches
// and talks both ways, while an attacker spraying the call's ports gets
// nothing.
func TestRTPBleedStrictThroughRealNAT(t *testing.T) {
	lab, p, alice, aRTP, bob, bRTP := natCallSetup(t, "latch = \"strict\"\n")
	evil := newAttacker(t, "127.0.0.66")

	dc := bob.inviteSDP("sip:alice@example.test", sdpWith(bRTP.port(), ""))
	inv := alice.recv("INVITE through the NAT", isRequest("INVITE")).(*sip.Request)
	toAlice := mediaOf(t, inv.Body())
	alice.answerSDP(inv, "alicetag", sdpWith(aRTP.port(), ""))
	ok := bob.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	toBob := mediaOf(t, ok.Body())
	dc.confirmed(ok)
	bob.request(dc, "ACK")
	alice.recv("ACK", isRequest("ACK"))

	relayPort := func(a netip.AddrPort) netip.AddrPort { // the attacker reaches the relay on loopback
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.Port())
	}
	evil.spray(5, relayPort(toAlice), relayPort(toBob))
	natTwoWay(t, aRTP, toAlice, bRTP, toBob, 'a')
	evil.spray(5, relayPort(toAlice), relayPort(toBob))
	natTwoWay(t, aRTP, toAlice, bRTP, toBob, 'k')
	evil.gotNothing(300 * time.Millisecond)

	_, callee := p.latched(dc.callID)
	latched, err := netip.ParseAddrPort(callee)
	if err != nil || latched.Addr() != lab.natOut || int(latched.Port()) == aRTP.port() {
		t.Errorf("alice latched on %q, want the NAT's address %s on a port of its own (not her SDP's %d)", callee, lab.natOut, aRTP.port())
	}
	eventually(t, 2*time.Second, func() bool { return p.unexpectedDropped() == evil.sent },
		"sprayed %d packets; unexpected_source drops never reached that", evil.sent)
}

// TestRTPBleedRtpengineStrictSource: with engine = "rtpengine" the
// default latch = "strict" is passed on as rtpengine's strict-source. On a
// node with the endpoint learning the README recommends (heuristic), once
// the streams have learnt their endpoints (rtpengine: 3 s) an attacker
// spraying the call's ports gets none of its packets into the call and
// receives nothing, and the phones keep two-way media. Without
// strict-source the sprayed packets are forwarded into the call for as
// long as it lasts. What happens in the learning window is rtpengine's:
// a spray before the phones' first packets can be sent media until the
// window closes (README).
func TestRTPBleedRtpengineStrictSource(t *testing.T) {
	requireE2E(t)
	rte := startRtpengine(t, 44600, "--endpoint-learning=heuristic")
	p := startProxy(t, rtpengineConfig(fmt.Sprintf("udp:127.0.0.1:%d=1", rte.ngPort)))
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	_, _, atBob, atAlice := rtpCall(t, alice, bob, aRTP, bRTP, "b1")
	toBob, toAlice := mediaOf(t, []byte(atBob)), mediaOf(t, []byte(atAlice))
	evil := newAttacker(t, "127.0.0.66")
	evil.spray(5, toAlice, toBob) // before either phone has sent

	// Each round the phones talk and the attacker sprays again; once the
	// node has learnt, every round is clean: both phones hear each other
	// and neither hears the attacker.
	m := byte('a')
	clean := func() bool {
		aRTP.sendTo(toAlice, m)
		bRTP.sendTo(toBob, m+1)
		ok := bRTP.within(m, 300*time.Millisecond) && aRTP.within(m+1, 300*time.Millisecond)
		evil.spray(1, toAlice, toBob)
		m += 2
		return ok && !aRTP.within('X', 100*time.Millisecond) && !bRTP.within('X', 10*time.Millisecond)
	}
	eventually(t, 8*time.Second, clean, "8 s into the call the phones still do not hear only each other")
	evil.drain()
	for range 5 {
		if !clean() {
			t.Fatal("a round after learning was not clean: media lost or the attacker's packets got in")
		}
	}
	// The phones here send no RTCP, so their RTCP streams learn the
	// attacker: its own RTCP comes back to it, never the call's media.
	evil.gotNoMedia(100 * time.Millisecond)
}

// gotNoMedia asserts that nothing of the call's media has reached the
// attacker: whatever it receives is its own sprayed packets echoed back.
func (a *attacker) gotNoMedia(d time.Duration) {
	a.t.Helper()
	buf := make([]byte, 2048)
	for {
		_ = a.conn.SetReadDeadline(time.Now().Add(d))
		n, src, err := a.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n != 16 || string(buf[12:16]) != "XXXX" {
			a.t.Fatalf("the attacker received a %d-byte packet of the call's from %s: the call's media leaks", n, src)
		}
	}
}

// drain discards what the attacker has received so far.
func (a *attacker) drain() {
	buf := make([]byte, 2048)
	for {
		_ = a.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := a.conn.ReadFromUDPAddrPort(buf); err != nil {
			return
		}
	}
}
