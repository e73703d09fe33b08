package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// waitForEngine polls cond until it holds or timeout passes.
func waitForEngine(t *testing.T, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// apiCall sends one API request and decodes its JSON reply into out.
func (p *proxy) apiCall(method, path, body string, out any) int {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.api+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestAPIUpdateRefusesBridgeFlags: in-iface/out-iface (bridge mode) are
// refused in an update body as they are in the config, not applied to
// nothing.
func TestAPIUpdateRefusesBridgeFlags(t *testing.T) {
	p := startProxy(t, "")
	for _, body := range []string{`{"caller_flags": "in-iface=internal"}`, `{"callee_flags": "out-iface=external"}`} {
		for _, path := range []string{"/api/v1/sessions/x/update", "/api/v1/sessions/update"} {
			var e map[string]any
			code := p.apiCall("POST", path, body, &e)
			msg, _ := e["error"].(string)
			if code != 400 || !strings.Contains(msg, "bridge mode is not supported") {
				t.Errorf("POST %s %s: %d %v, want 400 saying bridge mode is not supported", path, body, code, e)
			}
		}
	}
}
