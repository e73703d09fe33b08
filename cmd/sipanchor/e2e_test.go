package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// call sets up a call from caller to callee's AOR through the proxy and
// returns both dialogs; the callee answers 180 then 200.
func call(t *testing.T, caller, callee *ua) (*dlg, *dlg) {
	t.Helper()
	dc := caller.invite("sip:" + callee.name + "@example.test")
	caller.recv("100 Trying", isResponse(100, "INVITE"))
	inv := callee.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	if got, want := inv.Recipient.Host+":"+fmt.Sprint(inv.Recipient.Port), callee.contact; got != want {
		t.Errorf("callee's Request-URI host %s, want its Contact %s", got, want)
	}
	if len(inv.GetHeaders("Record-Route")) == 0 {
		t.Error("INVITE reached callee without Record-Route")
	}
	toTag := randTag()
	callee.answer(inv, 180, "Ringing", toTag)
	caller.recv("180", isResponse(180, "INVITE"))
	dd := callee.answer(inv, 200, "OK", toTag)
	ok := caller.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	dc.confirmed(ok)
	caller.request(dc, "ACK")
	callee.recv("ACK", isRequest("ACK"))
	return dc, dd
}

func TestRegisterAndCallBehindNAT(t *testing.T) {
	p := startProxy(t, "")
	// Both UAs write a private address in Contact and Via, as a UA behind
	// NAT does; their packets really come from 127.0.0.2 / 127.0.0.3.
	alice := newUA(t, "alice", "127.0.0.2", p, "192.168.1.60")
	bob := newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	for _, u := range []*ua{alice, bob} {
		res := u.register(600)
		if res.StatusCode != 200 {
			t.Fatalf("%s REGISTER: %d %s", u.name, res.StatusCode, res.Reason)
		}
		c := res.Contact()
		if c == nil || !strings.Contains(c.Address.Host, "192.168.1.") {
			t.Fatalf("%s: 200 lists no binding: %v", u.name, res)
		}
		if v, _ := c.Params.Get("expires"); v != "600" && v != "599" {
			t.Errorf("%s: expires=%s, want 600", u.name, v)
		}
	}
	regs := p.registrations()
	if len(regs) != 2 {
		t.Fatalf("registrations = %v", regs)
	}
	for _, r := range regs {
		if r["nat"] != true {
			t.Errorf("binding %v not marked behind NAT", r)
		}
	}

	// Caller hangs up: the BYE reaches bob at his real address.
	dc, _ := call(t, alice, bob)
	alice.request(dc, "BYE")
	bye := bob.recv("BYE", isRequest("BYE"))
	bob.okTo(bye)
	alice.recv("200 to BYE", isResponse(200, "BYE"))

	// Callee hangs up: the BYE reaches alice, whose Contact is private too.
	_, dd := call(t, alice, bob)
	bob.request(dd, "BYE")
	bye = alice.recv("BYE", isRequest("BYE"))
	if r := bye.(*sip.Request); r.Recipient.Host != "192.168.1.60" || r.Recipient.UriParams.Has("alias") {
		t.Errorf("BYE Request-URI %s: want alice's own Contact back, alias removed", r.Recipient.String())
	}
	alice.okTo(bye)
	bob.recv("200 to BYE", isResponse(200, "BYE"))

	if n := len(p.logLines("method=INVITE")); n == 0 {
		t.Error("no transaction log line for INVITE")
	}
}

func TestUnknownUserAndOptions(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	alice.invite("sip:nobody@example.test")
	res := alice.recv("final", isFinal("INVITE")).(*sip.Response)
	if res.StatusCode != 404 {
		t.Errorf("INVITE to unregistered user: %d, want 404", res.StatusCode)
	}
	alice.send(fmt.Sprintf(`OPTIONS sip:127.0.0.1:%d SIP/2.0
%s
Max-Forwards: 70
From: <sip:alice@example.test>;tag=1
To: <sip:127.0.0.1:%d>
Call-ID: opt-1
CSeq: 1 OPTIONS

`, p.port, alice.via("opt1"), p.port))
	if res := alice.recv("OPTIONS reply", isFinal("OPTIONS")).(*sip.Response); res.StatusCode != 200 {
		t.Errorf("OPTIONS to proxy: %d, want 200", res.StatusCode)
	}
	alice.send(`OPTIONS sip:bob@example.test SIP/2.0
` + alice.via("mf0") + `
Max-Forwards: 0
From: <sip:alice@example.test>;tag=1
To: <sip:bob@example.test>
Call-ID: opt-2
CSeq: 1 OPTIONS

`)
	if res := alice.recv("reply", isFinal("OPTIONS")).(*sip.Response); res.StatusCode != 483 {
		t.Errorf("Max-Forwards 0: %d, want 483", res.StatusCode)
	}
}

func TestLoopDetected(t *testing.T) {
	port := freePort(t)
	// A static route that points back at sipanchor itself.
	p := startProxyOnPort(t, port, fmt.Sprintf("[[route]]\nmatch = \"sip:*@loop.test\"\nto = \"sip:127.0.0.1:%d\"\n", port)+officePeer)
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	alice.send(`OPTIONS sip:x@loop.test SIP/2.0
` + alice.via("loop") + `
Max-Forwards: 70
From: <sip:alice@example.test>;tag=1
To: <sip:x@loop.test>
Call-ID: loop-1
CSeq: 1 OPTIONS

`)
	if res := alice.recv("reply", isFinal("OPTIONS")).(*sip.Response); res.StatusCode != 482 {
		t.Errorf("looping request: %d, want 482", res.StatusCode)
	}
}

func TestTCPClientReachedOverItsConnection(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	carol := newTCPUA(t, "carol", "127.0.0.4", p, "10.1.2.3")
	if res := carol.register(600); res.StatusCode != 200 {
		t.Fatalf("TCP REGISTER: %d", res.StatusCode)
	}
	dc, _ := call(t, alice, carol)
	// Crossing from UDP to TCP takes two Record-Routes.
	if len(dc.routes) != 2 {
		t.Errorf("caller's route set %v: want two entries (UDP and TCP side)", dc.routes)
	}
	alice.request(dc, "BYE")
	bye := carol.recv("BYE over TCP", isRequest("BYE"))
	carol.okTo(bye)
	alice.recv("200 to BYE", isResponse(200, "BYE"))
}

func TestForkingCancelsTheOtherBranch(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	desk := newUA(t, "bob", "127.0.0.5", p, "192.168.1.51")
	mobile := newUA(t, "bob", "127.0.0.6", p, "192.168.1.52")
	for _, u := range []*ua{desk, mobile} {
		if res := u.register(600); res.StatusCode != 200 {
			t.Fatalf("REGISTER: %d", res.StatusCode)
		}
	}
	if n := len(p.registrations()); n != 2 {
		t.Fatalf("%d bindings, want 2 contacts for bob", n)
	}
	dc := alice.invite("sip:bob@example.test")
	inv1 := desk.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	inv2 := mobile.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	desk.answer(inv1, 180, "Ringing", "desk")
	mobile.answer(inv2, 180, "Ringing", "mobile")
	desk.answer(inv1, 200, "OK", "desk")
	ok := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	if tag, _ := ok.To().Params.Get("tag"); tag != "desk" {
		t.Errorf("200 from %q, want desk", tag)
	}
	cancel := mobile.recv("CANCEL", isRequest("CANCEL")).(*sip.Request)
	if b1, _ := cancel.Via().Params.Get("branch"); b1 != mustBranch(inv2) {
		t.Errorf("CANCEL branch %s does not match the INVITE's %s", b1, mustBranch(inv2))
	}
	mobile.okTo(cancel)
	mobile.answer(inv2, 487, "Request Terminated", "mobile")
	mobile.recv("ACK for 487", isRequest("ACK"))
	dc.confirmed(ok)
	alice.request(dc, "ACK")
	desk.recv("ACK", isRequest("ACK"))
	alice.quiet("487 or second final", 500*time.Millisecond, isFinal("INVITE"))
	desk.quiet("CANCEL to the answering branch", 100*time.Millisecond, isRequest("CANCEL"))
}

func mustBranch(r *sip.Request) string {
	b, _ := r.Via().Params.Get("branch")
	return b
}

func TestCallerCancels(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	bob.register(600)
	dc := alice.invite("sip:bob@example.test")
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	bob.answer(inv, 180, "Ringing", "b")
	alice.recv("180", isResponse(180, "INVITE"))
	alice.send(fmt.Sprintf(`CANCEL sip:bob@example.test SIP/2.0
%s
Max-Forwards: 70
From: <%s>;tag=%s
To: <sip:bob@example.test>
Call-ID: %s
CSeq: 1 CANCEL

`, alice.via(strings.TrimPrefix(mustBranchOfLastInvite(t, alice), "z9hG4bK")), dc.local, dc.localTag, dc.callID))
	alice.recv("200 to CANCEL", isResponse(200, "CANCEL"))
	c := bob.recv("CANCEL", isRequest("CANCEL"))
	bob.okTo(c)
	bob.answer(inv, 487, "Request Terminated", "b")
	alice.recv("487", isResponse(487, "INVITE"))
}

// lastInviteBranch remembers the branch a ua used in its last INVITE.
func mustBranchOfLastInvite(t *testing.T, u *ua) string { return u.lastInviteBranch }
