package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestAPIRequestLimits: the running API refuses a 1 MiB body (413) and
// 64 KiB of header lines (431), and goes on serving.
func TestAPIRequestLimits(t *testing.T) {
	p := startProxy(t, "")
	resp, err := http.Post(p.api+"/api/v1/sessions/update", "application/json", strings.NewReader(`{"node": "`+strings.Repeat("x", 1<<20)+`"}`))
	if err != nil {
		t.Fatalf("POST 1 MiB: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST 1 MiB body: %d, want 413", resp.StatusCode)
	}

	req, _ := http.NewRequest("GET", p.api+"/api/v1/health", nil)
	req.Header.Set("X-Filler", strings.Repeat("y", 64<<10))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET with 64 KiB of headers: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("GET with 64 KiB of headers: %d, want 431", resp.StatusCode)
	}

	if h := p.health(); h["dialogs"] != 0 {
		t.Errorf("health after the refusals: %v", h)
	}
}

// TestSIPTCPOversizeRefused: over TCP, a message over the size limit — 70
// kB of header lines, or a header announcing a 10 MB body — is answered
// 513 Message Too Large and its connection closed (the body is not waited
// for); the next connection is served.
func TestSIPTCPOversizeRefused(t *testing.T) {
	p := startProxy(t, "")
	for _, tc := range []struct{ name, extra, contentLength string }{
		{"70 kB of header lines", "X-Big: " + strings.Repeat("a", 70000) + "\r\n", "0"},
		{"a 10 MB body announced", "", "10000000"},
	} {
		u := newTCPUA(t, "alice", "127.0.0.2", p, "127.0.0.2")
		msg := fmt.Sprintf("OPTIONS sip:bob@example.test SIP/2.0\r\n%s\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=%s\r\nTo: <sip:bob@example.test>\r\nCall-ID: big-%s\r\nCSeq: 1 OPTIONS\r\n%sContent-Length: %s\r\n\r\n",
			u.via(randTag()), u.tag, randTag(), tc.extra, tc.contentLength)
		if _, err := u.tc.Write([]byte(msg)); err != nil {
			t.Fatalf("%s: write: %v", tc.name, err)
		}
		res := u.recv(tc.name+": the 513", func(m sip.Message) bool { _, ok := m.(*sip.Response); return ok }).(*sip.Response)
		if res.StatusCode != 513 {
			t.Errorf("%s: %d %s, want 513 Message Too Large", tc.name, res.StatusCode, res.Reason)
		}
		closed := false
		eventually(t, 3*time.Second, func() bool {
			select {
			case _, ok := <-u.in:
				closed = !ok
			default:
			}
			return closed
		}, "%s: connection still open after the 513", tc.name)
	}
	bob := newTCPUA(t, "bob", "127.0.0.3", p, "127.0.0.3")
	if res := bob.register(600); res.StatusCode != 200 {
		t.Errorf("next connection: REGISTER %d %s", res.StatusCode, res.Reason)
	}
	if len(p.logLines(`reason="Message Too Large"`)) == 0 { // repeats are rate-limited
		t.Errorf("refusal not logged")
	}
}
