package main

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// natCallSetup starts sipanchor on 127.0.0.1 behind a port forward from
// a real NAT lab, with its media advertised on the lab's public address
// (more [media] keys in media), and registers alice from behind the NAT;
// bob is on loopback. Both have an RTP socket.
func natCallSetup(t *testing.T, media string) (lab *natLab, p *proxy, alice *ua, aRTP *rtpPeer, bob *ua, bRTP *rtpPeer) {
	t.Helper()
	lab = newNATLab(t)
	port := freePort(t)
	lab.dnatToLoopback("udp", port)
	p = startProxyOnPort(t, port, fmt.Sprintf("[media]\nadvertise = %q\n%s", lab.public, media))
	alice, aRTP = lab.natUA("alice", p, port), lab.natRTP()
	bob, bRTP = newUA(t, "bob", "127.0.0.3", p, ""), newRTP(t, "127.0.0.3")
	if res := alice.register(600); res.StatusCode != 200 {
		t.Fatalf("alice REGISTER through the NAT: %d %s", res.StatusCode, res.Reason)
	}
	return lab, p, alice, aRTP, bob, bRTP
}

// TestRealNATCallBothWays puts alice behind a real NAT (network namespaces,
// MASQUERADE --random) in front of a sipanchor whose SIP listener is bound
// to 127.0.0.1 and reached through a port forward (DNAT), as on a host
// where the SBC listens on loopback behind the firewall's forward. Her
// packets come from an address and port sipanchor has never been told of;
// every in-dialog request toward her (the ACK of a 200 she sent, a BYE)
// must go back out of the listener her packets came in on.
func TestRealNATCallBothWays(t *testing.T) {
	lab, p, alice, aRTP, bob, bRTP := natCallSetup(t, "")
	regs := p.registrations()
	if len(regs) != 1 || regs[0]["nat"] != true {
		t.Fatalf("alice's binding not marked behind NAT: %v", regs)
	}
	natSrc := fmt.Sprint(regs[0]["received"])
	if ap, err := netip.ParseAddrPort(natSrc); err != nil || ap.Addr() != lab.natOut {
		t.Fatalf("binding received from %s, want the NAT's outside address %s", natSrc, lab.natOut)
	}

	// bob calls alice: INVITE in, her 200 out, bob's ACK and BYE back in.
	dc := bob.inviteSDP("sip:alice@example.test", sdpWith(bRTP.port(), ""))
	inv := alice.recv("INVITE through the NAT", isRequest("INVITE")).(*sip.Request)
	toAlice := mediaOf(t, inv.Body())
	dd := alice.answerSDP(inv, "alicetag", sdpWith(aRTP.port(), ""))
	ok := bob.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	toBob := mediaOf(t, ok.Body())
	dc.confirmed(ok)
	bob.request(dc, "ACK")
	alice.recv("ACK of her 200, routed by her Contact alias", isRequest("ACK"))
	natTwoWay(t, aRTP, toAlice, bRTP, toBob, 'a')
	bob.request(dc, "BYE")
	alice.okTo(alice.recv("BYE from bob", isRequest("BYE")))
	bob.recv("200 to BYE", isResponse(200, "BYE"))

	// alice calls bob: bob's BYE must find her through the NAT.
	if res := bob.register(600); res.StatusCode != 200 {
		t.Fatalf("bob REGISTER: %d", res.StatusCode)
	}
	dc = alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
	inv = bob.recv("INVITE from behind the NAT", isRequest("INVITE")).(*sip.Request)
	toBob = mediaOf(t, inv.Body())
	dd = bob.answerSDP(inv, "bobtag", sdpWith(bRTP.port(), ""))
	ok = alice.recv("200 through the NAT", isResponse(200, "INVITE")).(*sip.Response)
	toAlice = mediaOf(t, ok.Body())
	dc.confirmed(ok)
	alice.request(dc, "ACK")
	bob.recv("ACK", isRequest("ACK"))
	natTwoWay(t, aRTP, toAlice, bRTP, toBob, 'k')
	bob.request(dd, "BYE")
	alice.okTo(alice.recv("BYE from bob, routed by her Contact alias", isRequest("BYE")))
	bob.recv("200 to BYE", isResponse(200, "BYE"))

	if lines := p.logLines("not forwarded"); len(lines) > 0 {
		t.Errorf("requests were dropped:\n%v", lines)
	}
}

// TestRealNATOverTCP: alice registers over TCP from behind the real NAT to
// a loopback-bound listener reached through a port forward; calls to her,
// the ACK and a BYE all reach her over her own connection.
func TestRealNATOverTCP(t *testing.T) {
	lab := newNATLab(t)
	port := freePort(t)
	lab.dnatToLoopback("tcp", port)
	p := startProxyOnPort(t, port, "[relay]\nengage = \"never\"\n")
	alice := lab.natTCPUA("alice", port)
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	if res := alice.register(600); res.StatusCode != 200 {
		t.Fatalf("alice REGISTER over TCP through the NAT: %d %s", res.StatusCode, res.Reason)
	}
	dc := bob.invite("sip:alice@example.test")
	inv := alice.recv("INVITE over her connection", isRequest("INVITE")).(*sip.Request)
	dd := alice.answer(inv, 200, "OK", "alicetag")
	ok := bob.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	dc.confirmed(ok)
	bob.request(dc, "ACK")
	alice.recv("ACK over her connection", isRequest("ACK"))
	alice.request(dd, "BYE")
	bob.okTo(bob.recv("BYE from alice", isRequest("BYE")))
	alice.recv("200 to her BYE", isResponse(200, "BYE"))
	if lines := p.logLines("not forwarded"); len(lines) > 0 {
		t.Errorf("requests were dropped:\n%v", lines)
	}
}

// natTwoWay checks RTP both ways between a UA behind the lab's NAT and one
// on loopback. Both stream, as phones do: packets relayed toward a side
// before the relay has latched onto its NAT mapping are lost, so each
// round sends again until one crosses in each direction.
func natTwoWay(t *testing.T, a *rtpPeer, toA netip.AddrPort, b *rtpPeer, toB netip.AddrPort, mark byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for gotA, gotB := false, false; !gotA || !gotB; {
		if time.Now().After(deadline) {
			t.Fatalf("media through the NAT: behind-NAT side received %v, other side received %v", gotA, gotB)
		}
		a.sendTo(toA, mark)
		b.sendTo(toB, mark+1)
		gotA = gotA || a.within(mark+1, 40*time.Millisecond)
		gotB = gotB || b.within(mark, 40*time.Millisecond)
	}
}
