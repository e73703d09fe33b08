package control

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"sipanchor/sip"
)

// fakeTraces is a CallTraces holding the trace of one call.
type fakeTraces map[string][]sip.TraceEntry

func (f fakeTraces) Trace(callID string) []sip.TraceEntry { return f[callID] }

// TestTraceEndpoint: GET /api/v1/sessions/{callid}/trace is the call's
// messages as JSON, oldest first; a call with no trace is a 404 that says
// why there may be none; the token guards it like every route.
func TestTraceEndpoint(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	traces := fakeTraces{"a/b c@h": {{Dir: "in", Seq: 1}}, "c1@h": {
		{Time: at, Dir: "in", Transport: "udp", Local: "127.0.0.1:5060", Remote: "127.0.0.2:4000", Seq: 1, Size: 9, Message: "INVITE..."},
		{Time: at.Add(time.Millisecond), Dir: "out", Transport: "tcp", Local: "127.0.0.1:5060", Remote: "127.0.0.3:4001", Seq: 2, Size: 9, Message: "INVITE..."},
	}}
	srv := httptest.NewServer(Handler(Deps{Token: "s3cret", Traces: traces, Log: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	get := func(path, token string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, body := get("/api/v1/sessions/c1@h/trace", "s3cret")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET trace: %d %s", resp.StatusCode, body)
	}
	var got []map[string]any
	if err := json.Unmarshal(body, &got); err != nil || len(got) != 2 {
		t.Fatalf("trace %s (%v)", body, err)
	}
	for _, k := range []string{"time", "dir", "transport", "local", "remote", "seq", "size", "message"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("entry has no %q: %v", k, got[0])
		}
	}
	if got[0]["dir"] != "in" || got[1]["dir"] != "out" || got[1]["transport"] != "tcp" || got[0]["time"] != "2026-01-02T03:04:05Z" {
		t.Errorf("entries %v", got)
	}

	// Call-ID is word (RFC 3261 §25.1): it may hold "/", escaped in the path.
	if resp, body := get("/api/v1/sessions/"+url.PathEscape("a/b c@h")+"/trace", "s3cret"); resp.StatusCode != 200 {
		t.Errorf("a Call-ID with / and a space: %d %s", resp.StatusCode, body)
	}

	resp, body = get("/api/v1/sessions/nobody/trace", "s3cret")
	var e map[string]string
	if resp.StatusCode != 404 || json.Unmarshal(body, &e) != nil || !strings.Contains(e["error"], "no SIP trace for call-id nobody") {
		t.Errorf("unknown call: %d %s", resp.StatusCode, body)
	}
	if resp, body := get("/api/v1/sessions/c1@h/trace", ""); resp.StatusCode != 401 {
		t.Errorf("without the token: %d %s", resp.StatusCode, body)
	}

	off := httptest.NewServer(Handler(Deps{Log: slog.New(slog.DiscardHandler)}))
	defer off.Close()
	r, err := http.Get(off.URL + "/api/v1/sessions/c1@h/trace")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 404 {
		t.Errorf("without a trace source: %d, want 404", r.StatusCode)
	}
}
