package main

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// registerRaw sends a REGISTER for user@example.test from u with the given
// Contact values (e.g. "<sip:x@127.0.0.9:5060>", "*") and extra header
// lines, and returns the final response.
func (u *ua) registerRaw(user string, contacts []string, expires int, extra string) *sip.Response {
	u.t.Helper()
	u.cseq++
	var hs strings.Builder
	for _, c := range contacts {
		hs.WriteString("Contact: " + c + "\n")
	}
	u.send(fmt.Sprintf("REGISTER sip:example.test SIP/2.0\n%s\nMax-Forwards: 70\nFrom: <sip:%[2]s@example.test>;tag=%[3]s\nTo: <sip:%[2]s@example.test>\nCall-ID: reg-%[2]s-%[3]s\nCSeq: %[4]d REGISTER\n%[5]sExpires: %[6]d\n%[7]s\n",
		u.via(randTag()), user, u.tag, u.cseq, hs.String(), expires, extra))
	return u.recv("REGISTER response", isFinal("REGISTER")).(*sip.Response)
}

// registerAuth registers u's contact for user@example.test answering the
// 401 with username's MD5 digest credentials, and returns the final
// response to the authenticated REGISTER.
func (u *ua) registerAuth(user, username, password string) *sip.Response {
	u.t.Helper()
	contact := []string{fmt.Sprintf("<sip:%s@%s>", u.name, u.contact)}
	chal := u.registerRaw(user, contact, 600, "")
	if chal.StatusCode != 401 {
		u.t.Fatalf("%s: REGISTER without credentials: %d %s, want 401", u.name, chal.StatusCode, chal.Reason)
	}
	nonce := ""
	for _, h := range chal.GetHeaders("WWW-Authenticate") {
		if strings.Contains(h.Value(), "MD5") {
			nonce = between(h.Value(), `nonce="`, `"`)
		}
	}
	resp := digest(username, "example.test", password, "REGISTER", "sip:example.test", nonce, "00000001", "r1")
	return u.registerRaw(user, contact, 600, fmt.Sprintf("Authorization: Digest username=%q, realm=\"example.test\", nonce=%q, uri=\"sip:example.test\", response=%q, algorithm=MD5, qop=auth, nc=00000001, cnonce=\"r1\"\n",
		username, nonce, resp))
}

// bindings is the registrar's table as "aor contact" lines, sorted.
func (p *proxy) bindings() []string {
	p.t.Helper()
	var out []string
	for _, r := range p.registrations() {
		out = append(out, fmt.Sprintf("%v %v", r["aor"], r["contact"]))
	}
	slices.Sort(out)
	return out
}

// TestRegisterAllowNetworks: with auth off, [registrar] allow_networks
// decides who may REGISTER. A REGISTER for alice from outside them — a new
// contact, or "*" to remove hers — gets 403 and changes nothing; from
// inside (an address or a CIDR) it is accepted.
func TestRegisterAllowNetworks(t *testing.T) {
	p := startProxy(t, "[registrar]\nmin_expires = 1\nauth = false\nallow_networks = [\"127.0.0.2\", \"127.0.0.16/28\"]\n")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	if res := alice.register(600); res.StatusCode != 200 {
		t.Fatalf("alice from an allowed address: %d %s", res.StatusCode, res.Reason)
	}
	carol := newUA(t, "carol", "127.0.0.17", p, "")
	if res := carol.register(600); res.StatusCode != 200 {
		t.Fatalf("carol from an allowed network: %d %s", res.StatusCode, res.Reason)
	}
	before := p.bindings()

	mallory := newUA(t, "mallory", "127.0.0.9", p, "")
	for _, tc := range []struct {
		name     string
		contacts []string
		expires  int
	}{
		{"a new contact for alice", []string{fmt.Sprintf("<sip:alice@%s>", mallory.contact)}, 600},
		{"alice's contact removed", []string{fmt.Sprintf("<sip:alice@%s>", alice.contact)}, 0},
		{"all of alice's contacts removed", []string{"*"}, 0},
		{"a fetch of alice's bindings", nil, 600},
	} {
		res := mallory.registerRaw("alice", tc.contacts, tc.expires, "")
		if res.StatusCode != 403 {
			t.Errorf("%s from outside allow_networks: %d %s, want 403", tc.name, res.StatusCode, res.Reason)
		}
		if len(res.GetHeaders("Contact")) != 0 {
			t.Errorf("%s: the 403 lists bindings: %v", tc.name, res.GetHeaders("Contact"))
		}
	}
	if after := p.bindings(); !slices.Equal(after, before) {
		t.Errorf("bindings changed by refused REGISTERs:\n got %v\nwant %v", after, before)
	}
	if len(p.logLines("REGISTER from outside registrar.allow_networks")) == 0 {
		t.Errorf("refused REGISTER not logged")
	}
}

// TestRegisterOtherUsersCredentials: with auth on, bob's own valid
// credentials do not let him register (or remove) a contact for alice: 403,
// and alice's binding stays as it was.
func TestRegisterOtherUsersCredentials(t *testing.T) {
	p := startProxy(t, "[registrar]\nmin_expires = 1\nauth = true\n")
	for _, u := range []string{"alice@example.test alicepw", "bob@example.test bobpw"} {
		args := append([]string{"ctl", "user", "add"}, strings.Fields(u)...)
		if out, err := exec.Command(binPath, append(args, "-c", p.cfgPath)...).CombinedOutput(); err != nil {
			t.Fatalf("ctl user add: %v\n%s", err, out)
		}
	}
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	if res := alice.registerAuth("alice", "alice", "alicepw"); res.StatusCode != 200 {
		t.Fatalf("alice with her credentials: %d %s", res.StatusCode, res.Reason)
	}
	before := p.bindings()
	if len(before) != 1 {
		t.Fatalf("bindings %v, want alice's", before)
	}

	bob := newUA(t, "bob", "127.0.0.3", p, "")
	if res := bob.registerAuth("alice", "bob", "bobpw"); res.StatusCode != 403 {
		t.Errorf("bob registering for alice with bob's credentials: %d %s, want 403", res.StatusCode, res.Reason)
	}
	if res := bob.registerAuth("alice", "alice", "bobpw"); res.StatusCode != 403 {
		t.Errorf("bob registering for alice with a wrong password: %d %s, want 403", res.StatusCode, res.Reason)
	}
	if res := bob.registerRaw("alice", []string{"*"}, 0, ""); res.StatusCode != 401 {
		t.Errorf("bob removing alice's bindings without credentials: %d %s, want 401", res.StatusCode, res.Reason)
	}
	if after := p.bindings(); !slices.Equal(after, before) {
		t.Errorf("bindings changed:\n got %v\nwant %v", after, before)
	}
	if res := bob.registerAuth("bob", "bob", "bobpw"); res.StatusCode != 200 {
		t.Errorf("bob registering himself: %d %s", res.StatusCode, res.Reason)
	}
}

// TestRegisterMaxContacts: [registrar] max_contacts bounds the bindings of
// one AOR. A REGISTER that would go over it gets 403 Too Many Contacts and
// changes nothing; refreshing or replacing existing contacts still works.
func TestRegisterMaxContacts(t *testing.T) {
	p := startProxy(t, "[registrar]\nmin_expires = 1\nmax_contacts = 2\n")
	phones := make([]*ua, 3)
	for i := range phones {
		phones[i] = newUA(t, "alice", fmt.Sprintf("127.0.0.%d", 2+i), p, "")
	}
	for _, u := range phones[:2] {
		if res := u.register(600); res.StatusCode != 200 {
			t.Fatalf("alice's phone at %s: %d %s", u.contact, res.StatusCode, res.Reason)
		}
	}
	before := p.bindings()
	if len(before) != 2 {
		t.Fatalf("bindings %v, want 2", before)
	}

	res := phones[2].register(600)
	if res.StatusCode != 403 || res.Reason != "Too Many Contacts" {
		t.Errorf("third contact: %d %s, want 403 Too Many Contacts", res.StatusCode, res.Reason)
	}
	// Two new contacts in one REGISTER, one replacing an old one: still 3.
	res = phones[0].registerRaw("alice", []string{fmt.Sprintf("<sip:alice@%s>", phones[2].contact), "<sip:alice@127.0.0.99:5060>"}, 600, "")
	if res.StatusCode != 403 {
		t.Errorf("two new contacts at once: %d %s, want 403", res.StatusCode, res.Reason)
	}
	if after := p.bindings(); !slices.Equal(after, before) {
		t.Errorf("bindings changed by refused REGISTERs:\n got %v\nwant %v", after, before)
	}

	if res := phones[0].register(600); res.StatusCode != 200 {
		t.Errorf("refreshing an existing contact at the limit: %d %s", res.StatusCode, res.Reason)
	}
	// Removing one and adding another in the same REGISTER stays at 2.
	res = phones[0].registerRaw("alice", []string{fmt.Sprintf("<sip:alice@%s>;expires=0", phones[0].contact), fmt.Sprintf("<sip:alice@%s>", phones[2].contact)}, 600, "")
	if res.StatusCode != 200 {
		t.Errorf("swapping a contact at the limit: %d %s", res.StatusCode, res.Reason)
	}
	if n := len(p.bindings()); n != 2 {
		t.Errorf("%d bindings after the swap, want 2", n)
	}
}
