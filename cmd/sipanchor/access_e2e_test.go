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

// inviteAs sends an out-of-dialog INVITE to uri claiming to come from
// `from`, with extra header lines (e.g. Proxy-Authorization), and returns
// its Call-ID.
func (u *ua) inviteAs(uri, from, extra string) string {
	u.t.Helper()
	cid := "acc-" + randTag()
	u.send(fmt.Sprintf("INVITE %[1]s SIP/2.0\n%[2]s\nMax-Forwards: 70\nFrom: <%[3]s>;tag=%[4]s\nTo: <%[1]s>\nCall-ID: %[5]s\nCSeq: 1 INVITE\n%[6]s\n%[7]sContent-Type: application/sdp\n\n%[8]s",
		uri, u.via(randTag()), from, randTag(), cid, u.contactHdr(), extra, sdpOffer))
	return cid
}

// finalTo waits for the final response to the INVITE with Call-ID cid.
func (u *ua) finalTo(cid string) *sip.Response {
	u.t.Helper()
	return u.recv("final response to "+cid, func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode >= 200 && string(*r.CallID()) == cid
	}).(*sip.Response)
}

// officePeer makes the phones' address 127.0.0.2 (alice in most tests) a
// trusted peer: with auth off, that is what lets phones call out through
// routes (no open relay).
const officePeer = "\n[[peer]]\nname = \"office\"\nnetworks = [\"127.0.0.2/32\"]\n"

// routedConfig: example.test is local, carrier.test goes to the carrier UA
// on 127.0.0.5, anything else to the default route, also the carrier.
func routedConfig(carrierPort int, extra string) string {
	return fmt.Sprintf("[[route]]\nmatch = \"sip:*@carrier.test\"\nto = \"sip:127.0.0.5:%[1]d\"\n\n%[2]s", carrierPort, extra)
}

// TestNoOpenRelay: a stranger's INVITE toward a static route is refused
// whatever its From says, with auth off (403) and on (407 for a local
// From, 403 for a foreign one); the carrier sees nothing. The same INVITE
// from a trusted peer's network is forwarded without a challenge.
func TestNoOpenRelay(t *testing.T) {
	for _, auth := range []bool{false, true} {
		t.Run(fmt.Sprintf("auth=%v", auth), func(t *testing.T) {
			port := freePort(t)
			extra := fmt.Sprintf("[[peer]]\nname = \"pbx\"\nnetworks = [\"127.0.0.8/32\"]\n\n[registrar]\nmin_expires = 1\nauth = %v\n", auth)
			p := startProxySIP(t, fmt.Sprintf("default_route = \"sip:127.0.0.5:%d\"", port), routedConfig(port, extra))
			carrier := newUAOn(t, "carrier", fmt.Sprintf("127.0.0.5:%d", port), p)
			stranger := newUA(t, "stranger", "127.0.0.9", p, "")
			pbx := newUA(t, "pbx", "127.0.0.8", p, "")

			for _, tc := range []struct {
				name, ruri, from string
				want             int
			}{
				{"spoofed local From to a route", "sip:123@carrier.test", "sip:alice@example.test", map[bool]int{false: 403, true: 407}[auth]},
				{"foreign From to a route", "sip:123@carrier.test", "sip:mallory@evil.test", 403},
				{"foreign From to the default route", "sip:123@elsewhere.test", "sip:mallory@evil.test", 403},
				{"a carrier's From to a route", "sip:123@carrier.test", "sip:456@carrier.test", 403},
			} {
				cid := stranger.inviteAs(tc.ruri, tc.from, "")
				if res := stranger.finalTo(cid); res.StatusCode != tc.want {
					t.Errorf("%s: %d %s, want %d", tc.name, res.StatusCode, res.Reason, tc.want)
				}
			}
			carrier.quiet("an INVITE relayed for a stranger", 300*time.Millisecond, isRequest("INVITE"))

			cid := pbx.inviteAs("sip:123@carrier.test", "sip:200@pbx.test", "")
			inv := carrier.recv("the trusted peer's INVITE", isRequest("INVITE")).(*sip.Request)
			if string(*inv.CallID()) != cid {
				t.Fatalf("carrier got %s, want %s", *inv.CallID(), cid)
			}
			carrier.answer(inv, 486, "Busy Here", "c1")
			if res := pbx.finalTo(cid); res.StatusCode != 486 {
				t.Errorf("trusted peer: %d, want the carrier's 486", res.StatusCode)
			}
		})
	}
}

// digest computes an MD5 qop=auth response.
func digest(user, realm, password, method, uri, nonce, nc, cnonce string) string {
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	return h(h(user+":"+realm+":"+password) + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + h(method+":"+uri))
}

// TestDigestReplayRefused: a local user's authenticated INVITE is
// forwarded; the same Proxy-Authorization replayed in a new INVITE (same
// nonce, same nc) is challenged again and nothing is forwarded; a higher
// nc on the same nonce is accepted. A REGISTER's replay gets 401.
func TestDigestReplayRefused(t *testing.T) {
	port := freePort(t)
	p := startProxy(t, routedConfig(port, "[registrar]\nmin_expires = 1\nauth = true\n"))
	if out, err := exec.Command(binPath, "ctl", "user", "add", "alice@example.test", "s3cret", "-c", p.cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("ctl user add: %v\n%s", err, out)
	}
	carrier := newUAOn(t, "carrier", fmt.Sprintf("127.0.0.5:%d", port), p)
	alice := newUA(t, "alice", "127.0.0.2", p, "")

	cid := alice.inviteAs("sip:123@carrier.test", "sip:alice@example.test", "")
	chal := alice.finalTo(cid)
	if chal.StatusCode != 407 {
		t.Fatalf("unauthenticated INVITE: %d, want 407", chal.StatusCode)
	}
	nonce := ""
	for _, h := range chal.GetHeaders("Proxy-Authenticate") {
		if strings.Contains(h.Value(), "MD5") {
			nonce = between(h.Value(), `nonce="`, `"`)
		}
	}
	auth := func(nc string) string {
		uri := "sip:123@carrier.test"
		return fmt.Sprintf("Proxy-Authorization: Digest username=\"alice\", realm=\"example.test\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=MD5, qop=auth, nc=%s, cnonce=\"c1\"\n",
			nonce, uri, digest("alice", "example.test", "s3cret", "INVITE", uri, nonce, nc, "c1"), nc)
	}
	forwarded := func(what string, nc string) {
		t.Helper()
		cid := alice.inviteAs("sip:123@carrier.test", "sip:alice@example.test", auth(nc))
		inv := carrier.recv(what, isRequest("INVITE")).(*sip.Request)
		carrier.answer(inv, 486, "Busy Here", "c"+nc)
		if res := alice.finalTo(cid); res.StatusCode != 486 {
			t.Fatalf("%s: %d, want the carrier's 486", what, res.StatusCode)
		}
	}
	forwarded("the authenticated INVITE", "00000001")

	cid = alice.inviteAs("sip:123@carrier.test", "sip:alice@example.test", auth("00000001"))
	if res := alice.finalTo(cid); res.StatusCode != 407 {
		t.Errorf("replayed Proxy-Authorization: %d %s, want 407", res.StatusCode, res.Reason)
	}
	carrier.quiet("a replayed INVITE", 300*time.Millisecond, isRequest("INVITE"))
	forwarded("the next INVITE on the same nonce (nc 2)", "00000002")

	// REGISTER: the same credentials twice.
	res := alice.register(600)
	nonce = between(res.GetHeader("WWW-Authenticate").Value(), `nonce="`, `"`)
	reg := func() int {
		alice.cseq++
		alice.send(fmt.Sprintf("REGISTER sip:example.test SIP/2.0\n%s\nMax-Forwards: 70\nFrom: <sip:alice@example.test>;tag=%s\nTo: <sip:alice@example.test>\nCall-ID: reg-alice-%s\nCSeq: %d REGISTER\n%s\nAuthorization: Digest username=\"alice\", realm=\"example.test\", nonce=\"%s\", uri=\"sip:example.test\", response=\"%s\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"r1\"\nExpires: 600\n\n",
			alice.via(randTag()), alice.tag, alice.tag, alice.cseq, alice.contactHdr(), nonce,
			digest("alice", "example.test", "s3cret", "REGISTER", "sip:example.test", nonce, "00000001", "r1")))
		return alice.recv("REGISTER reply", isFinal("REGISTER")).(*sip.Response).StatusCode
	}
	if code := reg(); code != 200 {
		t.Fatalf("authenticated REGISTER: %d", code)
	}
	if code := reg(); code != 401 {
		t.Errorf("replayed REGISTER credentials: %d, want 401", code)
	}
}

// TestNoOpenRelayInDialog: a stranger writes a To tag and a Request-URI
// naming a host sipanchor has never talked to (no Route, no dialog): the
// request is refused and the ACK dropped, not carried to that host.
func TestNoOpenRelayInDialog(t *testing.T) {
	p := startProxy(t, "")
	victim := newUA(t, "victim", "127.0.0.5", p, "")
	stranger := newUA(t, "stranger", "127.0.0.9", p, "")
	d := &dlg{callID: "forged-" + randTag(), localTag: randTag(), remote: randTag(), cseq: 1,
		local: "sip:mallory@evil.test", peer: "sip:premium@victim.test",
		target: fmt.Sprintf("sip:premium@127.0.0.5:%d", victim.local.Port)}
	stranger.requestBody(d, "INVITE", sdpOffer)
	if res := stranger.recv("final", isFinal("INVITE")).(*sip.Response); res.StatusCode != 403 {
		t.Errorf("forged in-dialog INVITE: %d %s, want 403", res.StatusCode, res.Reason)
	}
	stranger.request(d, "ACK")
	stranger.request(d, "BYE")
	if res := stranger.recv("final", isFinal("BYE")).(*sip.Response); res.StatusCode != 403 {
		t.Errorf("forged in-dialog BYE: %d %s, want 403", res.StatusCode, res.Reason)
	}
	victim.quiet("a request relayed for a stranger", 300*time.Millisecond, func(sip.Message) bool { return true })
}
