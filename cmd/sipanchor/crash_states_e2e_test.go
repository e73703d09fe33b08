package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The INVITE's transactions do not survive a kill -9: these tests check
// that what a restarted sipanchor gets for a call in progress (a CANCEL,
// the callee's final response, the caller's ACK) still ends the call
// properly from the dialog it restored.

// ackFinal sends the ACK of a non-2xx final response res to the last
// INVITE u sent in dialog d (RFC 3261 §17.1.1.3): the INVITE's
// Request-URI, top Via and CSeq number, the response's To.
func (u *ua) ackFinal(d *dlg, res *sip.Response) {
	u.t.Helper()
	u.send(fmt.Sprintf("ACK %s SIP/2.0\n%s\nMax-Forwards: 70\nFrom: <%s>;tag=%s\nTo: %s\nCall-ID: %s\nCSeq: 1 ACK\n\n",
		d.peer, u.via(strings.TrimPrefix(u.lastInviteBranch, "z9hG4bK")), d.local, d.localTag, res.To().Value(), d.callID))
}

// ringingKill9 starts an anchored call from alice to bob that rings
// (bob's 180 with tag "b1" relayed), then kills sipanchor (-9) and
// restarts it. c.invite is the INVITE bob holds.
func ringingKill9(t *testing.T, p *proxy) *anchoredCall {
	t.Helper()
	c := inviteAnchored(t, p)
	c.bob.answer(c.invite, 180, "Ringing", "b1")
	c.alice.recv("180", isResponse(180, "INVITE"))
	eventually(t, 2*time.Second, func() bool { return p.savedDialogs() == 1 }, "the ringing call was never saved")
	p.kill9()
	p.start()
	return c
}

// ackOfFinal waits for sipanchor's ACK of the callee's final response to
// inv: hop by hop, so with the INVITE's Via branch and CSeq number
// (RFC 3261 §17.1.1.3).
func ackOfFinal(t *testing.T, u *ua, inv *sip.Request) {
	t.Helper()
	ack := u.recv("sipanchor's ACK of the final response", isRequest("ACK")).(*sip.Request)
	if got, want := mustBranch(ack), mustBranch(inv); got != want {
		t.Errorf("ACK of the final response: Via branch %q, want the INVITE's %q", got, want)
	}
	if ack.CSeq().SeqNo != inv.CSeq().SeqNo {
		t.Errorf("ACK of the final response: CSeq %d, want the INVITE's %d", ack.CSeq().SeqNo, inv.CSeq().SeqNo)
	}
}

// TestKill9ThenCancel: the caller CANCELs a call that was ringing when
// sipanchor was killed (-9) and restarted. The restarted sipanchor knows
// the call from its store: it answers the CANCEL 200 (not 481), CANCELs
// the callee's INVITE as the old process sent it, relays the callee's
// 487 to the caller, ACKs it, absorbs the caller's ACK of that 487, and
// frees the relay ports.
func TestKill9ThenCancel(t *testing.T) {
	p := startProxy(t, "")
	c := ringingKill9(t, p)
	c.alice.cancel(c.dc)
	if res := c.alice.recv("response to the CANCEL", isFinal("CANCEL")).(*sip.Response); res.StatusCode != 200 {
		t.Fatalf("caller got %d to the CANCEL, want 200", res.StatusCode)
	}
	cancel := c.bob.recv("CANCEL", isRequest("CANCEL")).(*sip.Request)
	if got, want := mustBranch(cancel), mustBranch(c.invite); got != want {
		t.Errorf("CANCEL: Via branch %q, want the INVITE's %q", got, want)
	}
	if cancel.Recipient.String() != c.invite.Recipient.String() || cancel.CSeq().SeqNo != c.invite.CSeq().SeqNo {
		t.Errorf("CANCEL %s CSeq %d, want the INVITE's %s CSeq %d", cancel.Recipient.String(), cancel.CSeq().SeqNo, c.invite.Recipient.String(), c.invite.CSeq().SeqNo)
	}
	c.bob.okTo(cancel)
	failsAfterRestart(t, p, c, 487, "Request Terminated")
}

// failsAfterRestart: bob answers the INVITE that rang before the restart
// with code; the caller gets that response, bob its ACK, the caller's ACK
// goes no further, and nothing of the call is left.
func failsAfterRestart(t *testing.T, p *proxy, c *anchoredCall, code int, reason string) {
	t.Helper()
	c.bob.answer(c.invite, code, reason, "b1")
	res := c.alice.recv("final response relayed by the restarted sipanchor", isFinal("INVITE")).(*sip.Response)
	if res.StatusCode != code {
		t.Fatalf("caller got %d, want the callee's %d", res.StatusCode, code)
	}
	ackOfFinal(t, c.bob, c.invite)
	c.alice.ackFinal(c.dc, res)
	c.bob.quiet("ACK passed on", 500*time.Millisecond, isRequest("ACK"))
	p.waitIdle(fmt.Sprintf("after the %d", code))
}

// TestKill9ThenBusy: the callee rejects (486) a call that was ringing
// when sipanchor was killed (-9) and restarted. No transaction of the new
// process matches the 486: it is relayed to the caller along its Via, the
// callee gets its ACK, the caller's ACK goes no further, and the call's
// relay ports are freed.
func TestKill9ThenBusy(t *testing.T) {
	p := startProxy(t, "")
	failsAfterRestart(t, p, ringingKill9(t, p), 486, "Busy Here")
}

// TestKill9BeforeTheACKOfARejection: a trusted peer's call through a
// static route is rejected (486); sipanchor relays the 486 and is killed
// (-9) before the caller's ACK of it arrives. That ACK is hop by hop
// (RFC 3261 §17.1.1.3): the restarted sipanchor absorbs it instead of
// routing it to the Request-URI's host, which had its ACK already.
func TestKill9BeforeTheACKOfARejection(t *testing.T) {
	port := freePort(t)
	p := startProxy(t, fmt.Sprintf("[[route]]\nmatch = \"sip:*@127.0.0.5\"\nto = \"sip:127.0.0.5:%d\"\n", port)+officePeer)
	alice := newUA(t, "alice", "127.0.0.2", p, "192.168.1.60")
	carrier := newUAOn(t, "carrier", fmt.Sprintf("127.0.0.5:%d", port), p)
	dc := alice.inviteSDP(fmt.Sprintf("sip:bob@127.0.0.5:%d", port), sdpWith(4000, ""))
	inv := carrier.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	carrier.answer(inv, 486, "Busy Here", "c1")
	res := alice.recv("486", isResponse(486, "INVITE")).(*sip.Response)
	ackOfFinal(t, carrier, inv)
	eventually(t, 2*time.Second, func() bool { return p.savedDialogs() == 0 }, "the rejected call is still saved")
	p.kill9()
	p.start()
	alice.ackFinal(dc, res)
	carrier.quiet("ACK of the 486 routed on", 500*time.Millisecond, isRequest("ACK"))
}

// TestKill9ThenReinviteRejected: the callee rejects (488) a re-INVITE
// that was at it when sipanchor was killed (-9) and restarted. The caller
// gets the 488 with its own CSeq, the callee its ACK, and the media goes
// where it went before the re-INVITE.
func TestKill9ThenReinviteRejected(t *testing.T) {
	p := startProxy(t, "")
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	c.alice.requestBody(c.dc, "INVITE", sdpWith(newRTP(t, "127.0.0.2").port(), ""))
	reinv := c.bob.recv("re-INVITE", isRequest("INVITE")).(*sip.Request)
	p.kill9()
	p.start()
	c.bob.respondSDP(reinv, 488, "Not Acceptable Here", "")
	res := c.alice.recv("488 relayed by the restarted sipanchor", isFinal("INVITE")).(*sip.Response)
	if res.StatusCode != 488 || res.CSeq().SeqNo != uint32(c.dc.cseq) {
		t.Fatalf("caller got %d CSeq %d, want the callee's 488 with its own CSeq %d", res.StatusCode, res.CSeq().SeqNo, c.dc.cseq)
	}
	ackOfFinal(t, c.bob, reinv)
	c.twoWay(t, 'k')
	c.alice.request(c.dc, "BYE")
	c.bob.okTo(c.bob.recv("BYE", isRequest("BYE")))
	c.alice.recv("200 to BYE", isResponse(200, "BYE"))
	p.waitIdle("after the call")
}
