package sip

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"hash"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"sipanchor/store"

	"github.com/emiago/sipgo/sip"
)

// authedRegister is a REGISTER from 192.0.2.1 answering nonce with alg.
func authedRegister(t *testing.T, a *authenticator, alg, nonce, nc string) *sip.Request {
	t.Helper()
	h := map[string]func() hash.Hash{"MD5": md5.New, "SHA-256": sha256.New}[alg]
	resp := hexHash(h, ha1(h, "alice", "example.test", "pw")+":"+nonce+":"+nc+":c:auth:"+hexHash(h, "REGISTER:sip:example.test"))
	raw := fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@example.test>;tag=1\r\nTo: <sip:alice@example.test>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\n"+
		"Authorization: Digest username=\"alice\", realm=\"example.test\", nonce=\"%s\", uri=\"sip:example.test\", response=\"%s\", algorithm=%s, qop=auth, nc=%s, cnonce=\"c\"\r\nContent-Length: 0\r\n\r\n", nonce, resp, alg, nc)
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetSource("192.0.2.1:5060")
	return req
}

// With auth_algorithms = ["SHA-256"], MD5 credentials are refused even
// when right, and only SHA-256 is offered; SHA-256 ones pass once.
func TestAuthAlgorithmsRestrict(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := AddUser(ctx, db, "alice", "example.test", "example.test", "pw"); err != nil {
		t.Fatal(err)
	}
	a, err := newAuthenticator(db, "", []string{"SHA-256"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n := a.nonce(a.now(), "192.0.2.1")
	if res := a.check(ctx, authedRegister(t, a, "MD5", n, "00000001"), "alice", "example.test", false); res == nil || res.StatusCode != 403 {
		t.Errorf("MD5 credentials with SHA-256 only: %v, want 403", res)
	}
	res := a.check(ctx, authedRegister(t, a, "SHA-256", n, "00000001"), "alice", "example.test", false)
	if res != nil {
		t.Fatalf("SHA-256 credentials: %d, want accepted", res.StatusCode)
	}
	res = a.check(ctx, authedRegister(t, a, "SHA-256", n, "00000001"), "alice", "example.test", false)
	if res == nil || res.StatusCode != 401 {
		t.Fatalf("replayed SHA-256 credentials: %v, want a 401 challenge", res)
	}
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		if strings.Contains(h.Value(), "MD5") {
			t.Errorf("MD5 offered with SHA-256 only: %s", h.Value())
		}
	}
}
