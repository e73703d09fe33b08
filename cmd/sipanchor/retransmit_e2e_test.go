package main

import (
	"bytes"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestRetransmitted2xxRelayedAsTheFirst: the callee resends its 200 (its
// ACK is late), for the INVITE and for a re-INVITE. Each copy reaches the
// caller as the first did, with the relay's SDP and the aliased Contact,
// and the media stays where it was.
func TestRetransmitted2xxRelayedAsTheFirst(t *testing.T) {
	p := startProxy(t, "")
	c := inviteAnchored(t, p)
	inv := c.invite
	answer := sdpWith(c.bRTP.port(), "")
	c.dd = c.bob.answerSDP(inv, "b1", answer)
	first := c.alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	c.toAlice = mediaOf(t, first.Body())
	c.bob.answerSDP(inv, "b1", answer)
	sameAs(t, "200 resent", c.alice.recv("200 resent", isResponse(200, "INVITE")).(*sip.Response), first)
	c.dc.confirmed(first)
	c.alice.request(c.dc, "ACK")
	c.bob.recv("ACK", isRequest("ACK"))

	c.alice.requestBody(c.dc, "INVITE", sdpWith(c.aRTP.port(), "a=sendrecv\n"))
	reinv := c.bob.recv("re-INVITE", isRequest("INVITE")).(*sip.Request)
	c.bob.respondSDP(reinv, 200, "OK", answer)
	first = c.alice.recv("200 to the re-INVITE", isResponse(200, "INVITE")).(*sip.Response)
	c.bob.respondSDP(reinv, 200, "OK", answer)
	again := c.alice.recv("200 to the re-INVITE resent", isResponse(200, "INVITE")).(*sip.Response)
	sameAs(t, "200 to the re-INVITE resent", again, first)
	if again.CSeq().SeqNo != uint32(c.dc.cseq) {
		t.Errorf("200 to the re-INVITE resent: CSeq %d, want alice's %d", again.CSeq().SeqNo, c.dc.cseq)
	}
	c.alice.request(c.dc, "ACK")
	c.bob.recv("ACK of the re-INVITE", isRequest("ACK"))
	c.twoWay(t, 'r')
	c.alice.request(c.dc, "BYE")
	c.bob.okTo(c.bob.recv("BYE", isRequest("BYE")))
	c.alice.recv("200 to BYE", isResponse(200, "BYE"))
	p.waitIdle("after the call")
}

// sameAs checks that a resent 2xx reached the caller as the first one
// did: the same SDP (the relay's) and the same Contact.
func sameAs(t *testing.T, what string, got, first *sip.Response) {
	t.Helper()
	if !bytes.Equal(got.Body(), first.Body()) {
		t.Errorf("%s: SDP\n%s\nwant the first one's\n%s", what, got.Body(), first.Body())
	}
	if got.Contact() == nil || got.Contact().Value() != first.Contact().Value() {
		t.Errorf("%s: Contact %v, want the first one's %s", what, got.Contact(), first.Contact().Value())
	}
}
