package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// twoContacts registers bob twice (desk and mobile) and returns both.
func twoContacts(t *testing.T, p *proxy) (*ua, *ua) {
	t.Helper()
	desk := newUA(t, "bob", "127.0.0.5", p, "192.168.1.51")
	mobile := newUA(t, "bob", "127.0.0.6", p, "192.168.1.52")
	for _, u := range []*ua{desk, mobile} {
		if res := u.register(600); res.StatusCode != 200 {
			t.Fatalf("REGISTER: %d", res.StatusCode)
		}
	}
	return desk, mobile
}

func TestCallerCancelReachesEveryBranch(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	desk, mobile := twoContacts(t, p)
	dc := alice.invite("sip:bob@example.test")
	var invs []*sip.Request
	for i, u := range []*ua{desk, mobile} {
		inv := u.recv("INVITE", isRequest("INVITE")).(*sip.Request)
		u.answer(inv, 180, "Ringing", fmt.Sprint("t", i))
		invs = append(invs, inv)
	}
	alice.recv("180", isResponse(180, "INVITE"))
	alice.send(fmt.Sprintf("CANCEL sip:bob@example.test SIP/2.0\n%s\nMax-Forwards: 70\nFrom: <%s>;tag=%s\nTo: <sip:bob@example.test>\nCall-ID: %s\nCSeq: 1 CANCEL\n\n",
		alice.via(strings.TrimPrefix(alice.lastInviteBranch, "z9hG4bK")), dc.local, dc.localTag, dc.callID))
	alice.recv("200 to CANCEL", isResponse(200, "CANCEL"))
	for i, u := range []*ua{desk, mobile} {
		c := u.recv("CANCEL", isRequest("CANCEL")).(*sip.Request)
		if b, _ := c.Via().Params.Get("branch"); b != mustBranch(invs[i]) {
			t.Errorf("CANCEL branch %s, INVITE branch %s", b, mustBranch(invs[i]))
		}
		u.okTo(c)
		u.answer(invs[i], 487, "Request Terminated", fmt.Sprint("t", i))
	}
	alice.recv("487", isResponse(487, "INVITE"))
}

func TestAllBranchesFailBestResponseWins(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	desk, mobile := twoContacts(t, p)
	alice.invite("sip:bob@example.test")
	inv1 := desk.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	inv2 := mobile.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	desk.answer(inv1, 503, "Service Unavailable", "d")
	mobile.answer(inv2, 486, "Busy Here", "m")
	res := alice.recv("final", isFinal("INVITE")).(*sip.Response)
	if res.StatusCode != 486 {
		t.Errorf("final %d, want 486 (4xx beats 5xx)", res.StatusCode)
	}
	alice.quiet("second final", 300*time.Millisecond, isFinal("INVITE"))
}

func TestStaticRouteToUpstream(t *testing.T) {
	carrierPort := freePort(t)
	p := startProxy(t, fmt.Sprintf("[[route]]\nmatch = \"sip:*@carrier.test\"\nto = \"sip:127.0.0.8:%d;transport=udp\"\n", carrierPort)+officePeer)
	carrier := newUAOn(t, "carrier", fmt.Sprintf("127.0.0.8:%d", carrierPort), p)
	alice := newUA(t, "alice", "127.0.0.2", p, "192.168.1.60")
	dc := alice.invite("sip:+15551234@carrier.test")
	inv := carrier.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	if inv.Recipient.String() != "sip:+15551234@carrier.test" {
		t.Errorf("Request-URI changed to %s", inv.Recipient.String())
	}
	if mf := inv.MaxForwards(); mf == nil || mf.Val() != 69 {
		t.Errorf("Max-Forwards %v, want 69", mf)
	}
	vias := inv.GetHeaders("Via")
	if len(vias) != 2 {
		t.Fatalf("%d Vias, want ours and alice's", len(vias))
	}
	if v := vias[1].(*sip.ViaHeader); v.Params.GetOr("received", "") != "127.0.0.2" || v.Params.GetOr("rport", "") != fmt.Sprint(alice.local.Port) {
		t.Errorf("alice's Via lacks received/rport: %s", v.Value())
	}
	if c := inv.Contact(); !c.Address.UriParams.Has("alias") {
		t.Errorf("NAT'd caller's Contact not aliased: %s", c.Value())
	}
	dd := carrier.answer(inv, 200, "OK", "c1")
	ok := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	dc.confirmed(ok)
	alice.request(dc, "ACK")
	carrier.recv("ACK", isRequest("ACK"))
	carrier.request(dd, "BYE")
	alice.okTo(alice.recv("BYE from upstream", isRequest("BYE")))
	carrier.recv("200 to BYE", isResponse(200, "BYE"))

	alice.invite("sip:someone@elsewhere.test")
	if res := alice.recv("final", isFinal("INVITE")).(*sip.Response); res.StatusCode != 404 {
		t.Errorf("unrouted domain: %d, want 404", res.StatusCode)
	}
}

func TestRefreshAndUnregisterOneContact(t *testing.T) {
	p := startProxy(t, "")
	desk, mobile := twoContacts(t, p)
	if res := desk.register(900); len(res.GetHeaders("Contact")) != 2 {
		t.Fatalf("refresh lists %d contacts, want 2", len(res.GetHeaders("Contact")))
	}
	regs := p.registrations()
	if len(regs) != 2 {
		t.Fatalf("refresh duplicated a binding: %v", regs)
	}
	res := mobile.register(0)
	if res.StatusCode != 200 || len(res.GetHeaders("Contact")) != 1 || !strings.Contains(res.Contact().Address.Host, "192.168.1.51") {
		t.Errorf("after unregistering mobile: %d %v", res.StatusCode, res.GetHeaders("Contact"))
	}
	if n := len(p.registrations()); n != 1 {
		t.Errorf("%d bindings, want 1", n)
	}
}

func TestCtlUserDel(t *testing.T) {
	p := startProxy(t, "")
	run := func(args ...string) (string, error) {
		out, err := exec.Command(binPath, append(append([]string{"ctl", "user"}, args...), "-c", p.cfgPath)...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("add", "dave@example.test", "pw"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := run("del", "dave@example.test"); err != nil {
		t.Fatalf("del: %v %s", err, out)
	}
	if out, _ := run("list"); strings.Contains(out, "dave") {
		t.Errorf("deleted user still listed: %s", out)
	}
	if out, err := run("del", "dave@example.test"); err == nil {
		t.Errorf("deleting a missing user succeeded: %s", out)
	}
}
