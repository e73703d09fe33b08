package ng

import (
	"fmt"
	"strings"
	"testing"
)

// TestNGOversizedGarbageAnswered: a datagram near the UDP maximum full of
// garbage gets a short error reply (not a reply too large to send, which
// is no reply at all), and the server keeps serving.
func TestNGOversizedGarbageAnswered(t *testing.T) {
	_, _, c := newServer(t)
	const n = 60000
	ctl := strings.Repeat("\x01", n)
	for _, tc := range []struct{ name, raw string }{
		{"huge bad integer", "g1 d3:keyi" + ctl + "ee"},
		{"huge string length", "g2 d" + strings.Repeat("9", n) + ":x"},
		{"huge repeated key", fmt.Sprintf("g3 d%[1]d:%[2]s1:x%[1]d:%[2]s1:ye", n/2-20, ctl[:n/2-20])},
		{"deep nesting", "g4 d1:k" + strings.Repeat("l", n) + "e"},
		{"random bytes", "g5 " + strings.Repeat("\xff\x00", n/2)},
	} {
		cookie := strings.Fields(tc.raw)[0]
		r := askRaw(t, c, cookie, []byte(tc.raw))
		reason := fmt.Sprint(r["error-reason"])
		if r["result"] != "error" || !strings.Contains(reason, "malformed request") {
			t.Errorf("%s: %v, want a malformed request error", tc.name, r)
		}
		if len(reason) > 200 {
			t.Errorf("%s: error reason of %d bytes", tc.name, len(reason))
		}
	}
	if r := ask(t, c, map[string]any{"command": "ping"}); r["result"] != "pong" {
		t.Errorf("server stopped serving: %v", r)
	}
}

// TestNGLongCookieNotCached: a cookie of 60000 bytes gets an error reply
// and is not kept for retransmissions (4096 of them would hold 240 MiB).
func TestNGLongCookieNotCached(t *testing.T) {
	s, _, c := newServer(t)
	cookie := strings.Repeat("c", 60000)
	r := askRaw(t, c, cookie, []byte(cookie+" d7:command4:pinge"))
	if r["result"] != "error" || !strings.Contains(fmt.Sprint(r["error-reason"]), "cookie longer than") {
		t.Errorf("reply %v, want a cookie error", r)
	}
	s.cacheMu.Lock()
	n := len(s.cache)
	s.cacheMu.Unlock()
	if n != 0 {
		t.Errorf("%d replies cached", n)
	}
}
