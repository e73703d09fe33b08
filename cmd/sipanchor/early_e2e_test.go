package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// reliable sends a reliable provisional (RFC 3262): Require: 100rel and
// RSeq rseq, with body as SDP (none when empty).
func (u *ua) reliable(inv *sip.Request, code int, reason, toTag string, rseq int, body string) {
	u.t.Helper()
	u.respondTagged(inv, code, reason, toTag, body, "Require: 100rel", fmt.Sprintf("RSeq: %d", rseq))
}

// early completes the caller's view of an early dialog from a 18x.
func (d *dlg) early(res *sip.Response) {
	d.remote, _ = res.To().Params.Get("tag")
	d.target = res.Contact().Address.String()
	d.routes = nil
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		d.routes = append(d.routes, rr[i].Value())
	}
}

// prack sends a PRACK for RSeq rseq of the INVITE with CSeq 1.
func (u *ua) prack(d *dlg, rseq int, body string) {
	u.t.Helper()
	d.cseq++
	var routes strings.Builder
	for _, r := range d.routes {
		routes.WriteString("Route: " + r + "\n")
	}
	u.send(fmt.Sprintf("PRACK %s SIP/2.0\n%s\nMax-Forwards: 70\n%sFrom: <%s>;tag=%s\nTo: <%s>;tag=%s\nCall-ID: %s\nCSeq: %d PRACK\nRAck: %d 1 INVITE\n%s\n\n%s",
		d.target, u.via(randTag()), routes.String(), d.local, d.localTag, d.peer, d.remote, d.callID, d.cseq, rseq, contentType(body), body))
}

// TestEarlyMediaPrackUpdateLongRinging: 183 with SDP (100rel), a PRACK, an
// UPDATE with a new SDP in the early dialog, ringing twice setup_timeout,
// then the 200: the early dialog keeps one relay session (the UPDATE gets
// the INVITE's relay ports, not a session of its own), long ringing does
// not drop it, and media flows both ways to the UPDATE's new port.
func TestEarlyMediaPrackUpdateLongRinging(t *testing.T) {
	p := startProxy(t, "[media]\nsetup_timeout = \"1s\"\nsession_timeout = \"1s\"\n")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, aRTP2, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")

	dc := alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	toBob := mediaOf(t, inv.Body())
	bob.reliable(inv, 183, "Session Progress", "b1", 1, sdpWith(bRTP.port(), ""))
	r183 := alice.recv("183", isResponse(183, "INVITE")).(*sip.Response)
	toAlice := mediaOf(t, r183.Body())
	dc.early(r183)
	alice.prack(dc, 1, "")
	bob.okTo(bob.recv("PRACK", isRequest("PRACK")))
	alice.recv("200 to PRACK", isResponse(200, "PRACK"))
	natTwoWay(t, aRTP, toAlice, bRTP, toBob, 'e')

	// UPDATE in the early dialog: alice moves her media port.
	alice.requestBody(dc, "UPDATE", sdpWith(aRTP2.port(), ""))
	upd := bob.recv("UPDATE", isRequest("UPDATE")).(*sip.Request)
	if got := mediaOf(t, upd.Body()); got != toBob {
		t.Fatalf("early UPDATE reached bob with relay address %s, want the INVITE's %s (one session per branch)", got, toBob)
	}
	bob.respondSDP(upd, 200, "OK", sdpWith(bRTP.port(), ""))
	ok := alice.recv("200 to UPDATE", isResponse(200, "UPDATE")).(*sip.Response)
	if got := mediaOf(t, ok.Body()); got != toAlice {
		t.Fatalf("200 to the early UPDATE gave alice %s, want %s", got, toAlice)
	}

	// Ringing, silent, for twice setup_timeout: the relay must stay.
	alice.quiet("BYE or error while ringing", 2500*time.Millisecond, func(m sip.Message) bool {
		r, isReq := m.(*sip.Request)
		res, isRes := m.(*sip.Response)
		return isReq && r.Method == sip.BYE || isRes && res.StatusCode >= 300
	})
	bob.respondTagged(inv, 200, "OK", "b1", sdpWith(bRTP.port(), ""))
	fin := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	if got := mediaOf(t, fin.Body()); got != toAlice {
		t.Fatalf("200 gave alice %s, want the early dialog's %s", got, toAlice)
	}
	dc.confirmed(fin)
	alice.request(dc, "ACK")
	bob.recv("ACK", isRequest("ACK"))
	natTwoWay(t, aRTP2, toAlice, bRTP, toBob, 'a')
	alice.request(dc, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))
}

// TestOfferIn183AnsweredInPrack: the INVITE has no SDP; the callee offers
// in a reliable 183 and the caller answers in the PRACK (RFC 3262 §5). The
// PRACK's answer is relayed like any answer, and media flows after the 200.
func TestOfferIn183AnsweredInPrack(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")

	dc := alice.inviteSDP("sip:bob@example.test", "")
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	bob.reliable(inv, 183, "Session Progress", "b1", 1, sdpWith(bRTP.port(), ""))
	r183 := alice.recv("183 with the offer", isResponse(183, "INVITE")).(*sip.Response)
	toAlice := mediaOf(t, r183.Body())
	if toAlice.Port() == uint16(bRTP.port()) {
		t.Fatalf("the offer in the 183 was not anchored:\n%s", r183.Body())
	}
	dc.early(r183)
	alice.prack(dc, 1, sdpWith(aRTP.port(), ""))
	pr := bob.recv("PRACK with the answer", isRequest("PRACK")).(*sip.Request)
	toBob := mediaOf(t, pr.Body())
	if toBob.Port() == uint16(aRTP.port()) || toBob.Addr().String() == "192.168.1.50" {
		t.Fatalf("the answer in the PRACK was not anchored:\n%s", pr.Body())
	}
	bob.okTo(pr)
	alice.recv("200 to PRACK", isResponse(200, "PRACK"))
	bob.respondTagged(inv, 200, "OK", "b1", "")
	fin := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	dc.confirmed(fin)
	alice.request(dc, "ACK")
	bob.recv("ACK", isRequest("ACK"))
	natTwoWay(t, aRTP, toAlice, bRTP, toBob, 'p')
	alice.request(dc, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))
}

// TestRingingPastSetupTimeoutKeepsRelay: a 183 with SDP and no early media,
// ringing for twice setup_timeout; the relay must still be there at the
// 200 (the setup clock starts at the 200, not at the 183's answer).
func TestRingingPastSetupTimeoutKeepsRelay(t *testing.T) {
	p := startProxy(t, "[media]\nsetup_timeout = \"1s\"\n")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	dc := alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	toBob := mediaOf(t, inv.Body())
	bob.respondTagged(inv, 183, "Session Progress", "b1", sdpWith(bRTP.port(), ""))
	toAlice := mediaOf(t, alice.recv("183", isResponse(183, "INVITE")).(*sip.Response).Body())
	alice.quiet("BYE or error while ringing", 2500*time.Millisecond, func(m sip.Message) bool {
		r, isReq := m.(*sip.Request)
		res, isRes := m.(*sip.Response)
		return isReq && r.Method == sip.BYE || isRes && res.StatusCode >= 300
	})
	if h := p.health(); h["relay_sessions"] != 1 {
		t.Fatalf("after ringing 2.5 s: %v relay sessions, want 1", h["relay_sessions"])
	}
	bob.respondTagged(inv, 200, "OK", "b1", sdpWith(bRTP.port(), ""))
	fin := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	dc.confirmed(fin)
	alice.request(dc, "ACK")
	bob.recv("ACK", isRequest("ACK"))
	natTwoWay(t, aRTP, toAlice, bRTP, toBob, 'r')
	alice.request(dc, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))
}
