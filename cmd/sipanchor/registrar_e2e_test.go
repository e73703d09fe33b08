package main

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestRestartKeepsRegistrations(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	alice.register(600)
	bob.register(600)
	p.stop()
	p.start()
	if n := len(p.registrations()); n != 2 {
		t.Fatalf("after restart: %d bindings, want 2", n)
	}
	dc, _ := call(t, alice, bob)
	alice.request(dc, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))
}

func TestBindingsExpireOnTime(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	sent := time.Now()
	if res := bob.register(2); res.StatusCode != 200 {
		t.Fatalf("REGISTER: %d", res.StatusCode)
	}
	if n := len(p.registrations()); n != 1 {
		t.Fatalf("%d bindings, want 1", n)
	}
	// Expiry 2 s: there until then, and gone after.
	var regs []map[string]any
	gone := func() bool { regs = p.registrations(); return len(regs) == 0 }
	never(t, 1900*time.Millisecond-time.Since(sent), gone, "binding gone before its 2 s expiry")
	eventually(t, 3500*time.Millisecond-time.Since(sent), gone, "binding outlived its expiry: %v", &regs)
	// The API hides it at once; the sweep removes it (and logs) within 1 s.
	eventually(t, 3500*time.Millisecond-time.Since(sent), func() bool {
		return len(p.logLines("binding expired")) > 0
	}, "expiry not logged")
	if n := len(p.logLines("binding expired")); n != 1 {
		t.Errorf("expiry logged %d times", n)
	}
	alice.invite("sip:bob@example.test")
	if res := alice.recv("final", isFinal("INVITE")).(*sip.Response); res.StatusCode != 404 {
		t.Errorf("INVITE after expiry: %d, want 404", res.StatusCode)
	}
}

func TestRegistrarRules(t *testing.T) {
	p := startProxy(t, "[registrar]\nmin_expires = 60\nmax_expires = 600\n")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	res := bob.register(30)
	if res.StatusCode != 423 {
		t.Fatalf("expires below min: %d, want 423", res.StatusCode)
	}
	if h := res.GetHeader("Min-Expires"); h == nil || h.Value() != "60" {
		t.Errorf("423 without Min-Expires: 60: %v", res)
	}
	res = bob.register(7200)
	if v, _ := res.Contact().Params.Get("expires"); res.StatusCode != 200 || (v != "600" && v != "599") {
		t.Errorf("expires above max: %d expires=%s, want 200 lowered to 600", res.StatusCode, v)
	}
	// A second contact for the same AOR, then unregister both with "*".
	desk := newUA(t, "bob", "127.0.0.4", p, "")
	if res := desk.register(300); len(res.GetHeaders("Contact")) != 2 {
		t.Errorf("200 lists %d contacts, want 2", len(res.GetHeaders("Contact")))
	}
	desk.cseq++
	desk.send(fmt.Sprintf(`REGISTER sip:example.test SIP/2.0
%s
Max-Forwards: 70
From: <sip:bob@example.test>;tag=%s
To: <sip:bob@example.test>
Call-ID: reg-bob-%s
CSeq: %d REGISTER
Contact: *
Expires: 0

`, desk.via("star"), desk.tag, desk.tag, desk.cseq))
	if res := desk.recv("final", isFinal("REGISTER")).(*sip.Response); res.StatusCode != 200 || res.Contact() != nil {
		t.Errorf("Contact: * → %d with contacts %v", res.StatusCode, res.GetHeaders("Contact"))
	}
	if n := len(p.registrations()); n != 0 {
		t.Errorf("%d bindings left after Contact: *", n)
	}
}

func TestKeepaliveRemovesDeadBinding(t *testing.T) {
	p := startProxy(t, "[nat]\nkeepalive_interval = \"500ms\"\nkeepalive_failures = 2\n")
	bob := newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	alive := newUA(t, "carol", "127.0.0.4", p, "192.168.1.51")
	bob.register(600)
	alive.register(600)
	// carol answers her pings; bob's socket is gone.
	ping := alive.recv("keepalive OPTIONS", isRequest("OPTIONS")).(*sip.Request)
	if ping.Recipient.Host != "192.168.1.51" {
		t.Errorf("ping Request-URI %s, want carol's Contact", ping.Recipient.String())
	}
	bob.pc.Close()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case m, ok := <-alive.in:
				if !ok {
					return
				}
				if r, ok := m.(*sip.Request); ok && r.Method == sip.OPTIONS {
					alive.okTo(r)
				}
			case <-stop:
				return
			}
		}
	}()
	defer close(stop)
	var regs []map[string]any
	eventually(t, 15*time.Second, func() bool {
		regs = p.registrations()
		return len(regs) == 1
	}, "dead binding not removed: %v", &regs)
	if regs[0]["aor"] != "carol@example.test" {
		t.Fatalf("wrong binding removed: %v", regs)
	}
	// The binding goes first, then the line is logged.
	eventually(t, 3*time.Second, func() bool { return len(p.logLines("keepalives unanswered")) > 0 }, "removal not logged")
	if n := len(p.logLines("keepalives unanswered")); n != 1 {
		t.Errorf("removal logged %d times", n)
	}
}

func TestDigestAuthentication(t *testing.T) {
	p := startProxy(t, "[registrar]\nauth = true\n")
	out, err := exec.Command(binPath, "ctl", "user", "add", "bob@example.test", "s3cret", "-c", p.cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("ctl user add: %v\n%s", err, out)
	}
	out, _ = exec.Command(binPath, "ctl", "user", "list", "-c", p.cfgPath).CombinedOutput()
	if !strings.Contains(string(out), "bob") {
		t.Errorf("ctl user list: %s", out)
	}
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	res := bob.register(600)
	if res.StatusCode != 401 {
		t.Fatalf("unauthenticated REGISTER: %d, want 401", res.StatusCode)
	}
	var chal string
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		if strings.Contains(h.Value(), "MD5") {
			chal = h.Value()
		}
	}
	nonce := between(chal, `nonce="`, `"`)
	if nonce == "" || !strings.Contains(chal, `realm="example.test"`) {
		t.Fatalf("challenge %q", chal)
	}
	for _, tc := range []struct {
		password string
		want     int
	}{{"wrong", 403}, {"s3cret", 200}} {
		h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
		resp := h(h("bob:example.test:"+tc.password) + ":" + nonce + ":00000001:abc:auth:" + h("REGISTER:sip:example.test"))
		bob.cseq++
		bob.send(fmt.Sprintf(`REGISTER sip:example.test SIP/2.0
%s
Max-Forwards: 70
From: <sip:bob@example.test>;tag=%s
To: <sip:bob@example.test>
Call-ID: reg-bob-%s
CSeq: %d REGISTER
%s
Authorization: Digest username="bob", realm="example.test", nonce="%s", uri="sip:example.test", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"
Expires: 600

`, bob.via(randTag()), bob.tag, bob.tag, bob.cseq, bob.contactHdr(), nonce, resp))
		if res := bob.recv("final", isFinal("REGISTER")).(*sip.Response); res.StatusCode != tc.want {
			t.Errorf("password %q: %d, want %d", tc.password, res.StatusCode, tc.want)
		}
	}
	// An INVITE claiming to be from a local user is challenged with 407.
	bob.invite("sip:bob@example.test")
	if res := bob.recv("final", isFinal("INVITE")).(*sip.Response); res.StatusCode != 407 {
		t.Errorf("unauthenticated INVITE: %d, want 407", res.StatusCode)
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}
