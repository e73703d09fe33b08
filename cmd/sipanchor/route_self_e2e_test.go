package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// callThrough calls uri from caller and expects callee to get the INVITE
// with the Request-URI unchanged; the call is answered, confirmed and hung
// up by the caller, all through the proxy.
func callThrough(t *testing.T, caller, callee *ua, uri string) {
	t.Helper()
	dc := caller.invite(uri)
	inv := callee.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	if got := inv.Recipient.String(); got != uri {
		t.Errorf("%s got Request-URI %s, want %s", callee.name, got, uri)
	}
	callee.answer(inv, 200, "OK", randTag())
	ok := caller.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	dc.confirmed(ok)
	caller.request(dc, "ACK")
	callee.recv("ACK", isRequest("ACK"))
	caller.request(dc, "BYE")
	callee.okTo(callee.recv("BYE", isRequest("BYE")))
	caller.recv("200 to BYE", isResponse(200, "BYE"))
}

// registerAs registers u's contact for user@host, sending the REGISTER to
// registrar (the proxy's own address or a served domain).
func registerAs(u *ua, user, host, registrar string) *sip.Response {
	u.t.Helper()
	u.cseq++
	u.send(fmt.Sprintf(`REGISTER sip:%[7]s SIP/2.0
%[2]s
Max-Forwards: 70
From: <sip:%[3]s@%[1]s>;tag=%[4]s
To: <sip:%[3]s@%[1]s>
Call-ID: reg-%[3]s-%[4]s
CSeq: %[5]d REGISTER
Contact: <sip:%[3]s@%[6]s>
Expires: 600

`, host, u.via(randTag()), user, u.tag, u.cseq, u.contact, registrar))
	return u.recv("REGISTER response", isFinal("REGISTER")).(*sip.Response)
}

// TestTrunkCallToOwnAddress: a request for a user without a binding, sent
// to the proxy's own address or to a served domain, goes to the first
// matching [[route]] (then default_route) instead of 404; a binding still
// wins; with neither, 404.
func TestTrunkCallToOwnAddress(t *testing.T) {
	pbxPort := freePort(t)
	p := startProxy(t, fmt.Sprintf(`[[route]]
match = "sip:*@127.0.0.1*"
to = "sip:127.0.0.5:%[1]d;transport=udp"

[[route]]
match = "sip:5*@example.test"
to = "sip:127.0.0.5:%[1]d;transport=udp"
`, pbxPort)+officePeer)
	pbx := newUAOn(t, "pbx", fmt.Sprintf("127.0.0.5:%d", pbxPort), p)
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	self := fmt.Sprintf("sip:1234@127.0.0.1:%d", p.port)

	// Own address, no binding: the route.
	callThrough(t, alice, pbx, self)
	// Served domain, no binding: the route.
	callThrough(t, alice, pbx, "sip:5678@example.test")
	// Served domain, no binding, no route: 404.
	alice.invite("sip:nobody@example.test")
	if res := alice.recv("final", isFinal("INVITE")).(*sip.Response); res.StatusCode != 404 {
		t.Errorf("no binding, no route: got %d, want 404", res.StatusCode)
	}
	// A binding wins over the route.
	ext := newUA(t, "ext", "127.0.0.6", p, "")
	if res := registerAs(ext, "1234", "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", p.port)); res.StatusCode != 200 {
		t.Fatalf("REGISTER 1234@127.0.0.1: %d", res.StatusCode)
	}
	if res := registerAs(ext, "5678", "example.test", "example.test"); res.StatusCode != 200 {
		t.Fatalf("REGISTER 5678@example.test: %d", res.StatusCode)
	}
	for _, uri := range []string{self, "sip:5678@example.test"} {
		alice.invite(uri)
		inv := ext.recv("INVITE", isRequest("INVITE")).(*sip.Request)
		ext.answer(inv, 486, "Busy Here", randTag())
		if res := alice.recv("final", isFinal("INVITE")).(*sip.Response); res.StatusCode != 486 {
			t.Errorf("%s: got %d, want the bound UA's 486", uri, res.StatusCode)
		}
	}
	// Each INVITE went out before its 486 came back: had one been
	// forked to the PBX too, it would be queued there by now.
	for len(pbx.in) > 0 {
		if m := <-pbx.in; isRequest("INVITE")(m) {
			t.Errorf("the PBX got an INVITE for a bound user: %s", m.(*sip.Request).Recipient.String())
		}
	}
}

// TestDefaultRouteForOwnAddress: the same with sip.default_route, and 404
// when there is neither a route nor a binding.
func TestDefaultRouteForOwnAddress(t *testing.T) {
	pbxPort := freePort(t)
	p := startProxySIP(t, fmt.Sprintf("default_route = \"sip:127.0.0.5:%d\"", pbxPort), officePeer)
	pbx := newUAOn(t, "pbx", fmt.Sprintf("127.0.0.5:%d", pbxPort), p)
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	callThrough(t, alice, pbx, fmt.Sprintf("sip:1234@127.0.0.1:%d", p.port))
	callThrough(t, alice, pbx, "sip:1234@example.test")

	bare := startProxy(t, "")
	carol := newUA(t, "carol", "127.0.0.2", bare, "")
	carol.invite(fmt.Sprintf("sip:1234@127.0.0.1:%d", bare.port))
	if res := carol.recv("final", isFinal("INVITE")).(*sip.Response); res.StatusCode != 404 {
		t.Errorf("no route, no binding: got %d, want 404", res.StatusCode)
	}
}

// TestTLSRouteConfigRefused: a route or default route toward sips: or
// transport=tls stops the binary at load with FILE:LINE: key: why, instead
// of sending those requests over UDP.
func TestTLSRouteConfigRefused(t *testing.T) {
	requireE2E(t)
	dir := t.TempDir()
	// Should the config be accepted, serve must not touch anything outside
	// the test: its own store, API port and SIP port.
	listen := fmt.Sprintf("[store]\npath = %q\n\n[api]\nlisten = \"127.0.0.1:%d\"\n\n[sip]\nlisten = [\"udp:127.0.0.1:%d\"]\n",
		filepath.Join(dir, "sipanchor.db"), freePort(t), freePort(t))
	for name, tc := range map[string]struct{ toml, want string }{
		"sips route":  {listen + "\n[[route]]\nmatch = \"sip:*@carrier.test\"\nto = \"sips:127.0.0.8:5061\"\n", `:12: route.0.to: "sips:127.0.0.8:5061": sips/TLS needs a tls listener, not supported yet`},
		"tls default": {listen + "default_route = \"sip:127.0.0.8;transport=tls\"\n", `:9: sip.default_route: "sip:127.0.0.8;transport=tls": sips/TLS needs a tls listener, not supported yet`},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".toml")
		if err := os.WriteFile(path, []byte(tc.toml), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"config", "check", "-c", path}, {"serve", "-c", path}} {
			// A config wrongly accepted would make serve run: bound it.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := exec.CommandContext(ctx, binPath, args...).CombinedOutput()
			cancel()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
				t.Errorf("%s %s: exit %v, want non-zero", name, args[0], err)
			}
			if !strings.Contains(string(out), path+tc.want) {
				t.Errorf("%s %s: output %q\nwant %q", name, args[0], out, path+tc.want)
			}
		}
	}
}
