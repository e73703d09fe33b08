package main

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// respondSDP answers an in-dialog request with code and an SDP body.
func (u *ua) respondSDP(req *sip.Request, code int, reason, body string) {
	u.t.Helper()
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if code < 300 {
		res.AppendHeader(sip.NewHeader("Contact", strings.TrimPrefix(u.contactHdr(), "Contact: ")))
	}
	if body != "" {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	res.SetBody(nil)
	u.reply(res, body)
}

// reinvite runs one re-INVITE from `from` (dialog df) to `to`: offer is
// the request's SDP ("" for none), answer the 2xx's. It returns the SDP
// each side received, as sipanchor rewrote it.
func reinvite(t *testing.T, from *ua, df *dlg, to *ua, offer, answer, ackSDP string) (atTo, atFrom []byte) {
	t.Helper()
	from.requestBody(df, "INVITE", offer)
	inv := to.recv("re-INVITE", isRequest("INVITE")).(*sip.Request)
	to.respondSDP(inv, 200, "OK", answer)
	ok := from.recv("200 to re-INVITE", isResponse(200, "INVITE")).(*sip.Response)
	from.requestBody(df, "ACK", ackSDP)
	ack := to.recv("ACK", isRequest("ACK")).(*sip.Request)
	if offer != "" {
		return inv.Body(), ok.Body()
	}
	return ack.Body(), ok.Body()
}

// sdpHas reports whether an SDP names sipanchor and not the UA's address.
func anchored(t *testing.T, what string, body []byte, want string) {
	t.Helper()
	s := string(body)
	if strings.Contains(s, "c=IN IP4 192.168.") {
		t.Errorf("%s: a UA's private address leaked:\n%s", what, s)
	}
	if want != "" && !strings.Contains(s, want) {
		t.Errorf("%s: want %q in:\n%s", what, want, s)
	}
}

func TestReinvitesKeepTwoWayMedia(t *testing.T) {
	p := startProxy(t, "")
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	toAlice, toBob := c.toAlice, c.toBob
	// The steps share one call, in order: each starts from the media the
	// one before left.
	step := func(name string, f func()) {
		t.Helper()
		t.Log("step:", name)
		f()
	}
	same := func(step string, atBob, atAlice []byte) {
		t.Helper()
		if got := mediaOf(t, atBob); got != toBob && !strings.Contains(string(atBob), "c=IN IP4 0.0.0.0") {
			t.Errorf("%s: callee told to send to %s, was %s: a new port is a one-way-audio bug", step, got, toBob)
		}
		if got := mediaOf(t, atAlice); got != toAlice {
			t.Errorf("%s: caller told to send to %s, was %s", step, got, toAlice)
		}
	}

	step("hold sendonly and resume", func() {
		atBob, atAlice := reinvite(t, c.alice, c.dc, c.bob, sdpWith(c.aRTP.port(), "a=sendonly\n"), sdpWith(c.bRTP.port(), "a=recvonly\n"), "")
		anchored(t, "hold offer", atBob, "a=sendonly")
		anchored(t, "hold answer", atAlice, "a=recvonly")
		same("hold", atBob, atAlice)
		c.aRTP.sendTo(c.toAlice, 'h') // music on hold reaches the held party
		c.bRTP.recv('h')
		atBob, atAlice = reinvite(t, c.alice, c.dc, c.bob, sdpWith(c.aRTP.port(), ""), sdpWith(c.bRTP.port(), ""), "")
		same("resume", atBob, atAlice)
		c.twoWay(t, 'b')
	})
	step("hold with 0.0.0.0 and resume", func() {
		hold := strings.Replace(sdpWith(c.aRTP.port(), ""), "c=IN IP4 192.168.1.50", "c=IN IP4 0.0.0.0", 1)
		atBob, _ := reinvite(t, c.alice, c.dc, c.bob, hold, sdpWith(c.bRTP.port(), ""), "")
		anchored(t, "0.0.0.0 hold", atBob, "c=IN IP4 0.0.0.0")
		reinvite(t, c.alice, c.dc, c.bob, sdpWith(c.aRTP.port(), ""), sdpWith(c.bRTP.port(), ""), "")
		c.twoWay(t, 'c')
	})
	step("caller moves its RTP port", func() {
		moved := newRTP(t, "127.0.0.2")
		atBob, atAlice := reinvite(t, c.alice, c.dc, c.bob, sdpWith(moved.port(), ""), sdpWith(c.bRTP.port(), ""), "")
		same("move", atBob, atAlice)
		c.aRTP = moved
		c.twoWay(t, 'd')
	})
	step("codec change", func() {
		pcma := strings.ReplaceAll(sdpWith(c.aRTP.port(), ""), "RTP/AVP 0\na=rtpmap:0 PCMU/8000", "RTP/AVP 8\na=rtpmap:8 PCMA/8000")
		atBob, _ := reinvite(t, c.alice, c.dc, c.bob, pcma, strings.ReplaceAll(sdpWith(c.bRTP.port(), ""), "RTP/AVP 0\na=rtpmap:0 PCMU/8000", "RTP/AVP 8\na=rtpmap:8 PCMA/8000"), "")
		anchored(t, "codec change", atBob, "a=rtpmap:8 PCMA/8000")
		c.twoWay(t, 'e')
	})
	step("re-INVITE without SDP", func() {
		// The 200 carries the callee's offer, the ACK the caller's answer.
		atBob, atAlice := reinvite(t, c.alice, c.dc, c.bob, "", sdpWith(c.bRTP.port(), ""), sdpWith(c.aRTP.port(), ""))
		anchored(t, "offer in 200", atAlice, "m=audio")
		anchored(t, "answer in ACK", atBob, "m=audio")
		same("late offer re-INVITE", atBob, atAlice)
		c.twoWay(t, 'f')
	})
	step("re-INVITE from the callee", func() {
		moved := newRTP(t, "127.0.0.3")
		atAlice, atBob := reinvite(t, c.bob, c.dd, c.alice, sdpWith(moved.port(), ""), sdpWith(c.aRTP.port(), ""), "")
		same("callee re-INVITE", atBob, atAlice)
		c.bRTP = moved
		c.twoWay(t, 'g')
	})
	step("rejected re-INVITE keeps the old media", func() {
		elsewhere := newRTP(t, "127.0.0.2")
		c.alice.requestBody(c.dc, "INVITE", sdpWith(elsewhere.port(), ""))
		inv := c.bob.recv("re-INVITE", isRequest("INVITE")).(*sip.Request)
		c.bob.respondSDP(inv, 488, "Not Acceptable Here", "")
		c.alice.recv("488", isResponse(488, "INVITE"))
		c.bob.recv("ACK of 488", isRequest("ACK"))
		c.twoWay(t, 'i') // the old sockets still talk both ways
	})
	step("glare", func() {
		c.alice.requestBody(c.dc, "INVITE", sdpWith(c.aRTP.port(), ""))
		c.bob.requestBody(c.dd, "INVITE", sdpWith(c.bRTP.port(), ""))
		invAtBob := c.bob.recv("re-INVITE", isRequest("INVITE")).(*sip.Request)
		invAtAlice := c.alice.recv("re-INVITE", isRequest("INVITE")).(*sip.Request)
		c.bob.respondSDP(invAtBob, 491, "Request Pending", "")
		c.alice.respondSDP(invAtAlice, 491, "Request Pending", "")
		c.alice.recv("491", isResponse(491, "INVITE"))
		c.bob.recv("491", isResponse(491, "INVITE"))
		c.twoWay(t, 'j')
		// The retry (RFC 3261 §14.1) goes through.
		reinvite(t, c.alice, c.dc, c.bob, sdpWith(c.aRTP.port(), ""), sdpWith(c.bRTP.port(), ""), "")
		c.twoWay(t, 'l')
	})
}

func TestLateOfferCall(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "192.168.1.60")
	bob := newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	dc := alice.inviteSDP("sip:bob@example.test", "")
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	if len(inv.Body()) != 0 {
		t.Fatalf("INVITE without SDP arrived with a body:\n%s", inv.Body())
	}
	bob.answerSDP(inv, "bob1", sdpWith(bRTP.port(), "")) // the offer
	ok := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	toAlice := mediaOf(t, ok.Body())
	anchored(t, "offer in 200", ok.Body(), "")
	dc.confirmed(ok)
	alice.requestBody(dc, "ACK", sdpWith(aRTP.port(), "")) // the answer
	ack := bob.recv("ACK", isRequest("ACK")).(*sip.Request)
	toBob := mediaOf(t, ack.Body())
	anchored(t, "answer in ACK", ack.Body(), "")
	if toAlice.Addr().String() != "127.0.0.1" || toBob.Addr().String() != "127.0.0.1" {
		t.Fatalf("media not anchored: %s / %s", toAlice, toBob)
	}
	aRTP.sendTo(toAlice, 'a')
	bRTP.sendTo(toBob, 'b')
	aRTP.recv('b')
	aRTP.sendTo(toAlice, 'c')
	bRTP.recv('c')
}
