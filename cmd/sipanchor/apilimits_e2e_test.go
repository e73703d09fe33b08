package main

import (
	"net/http"
	"strings"
	"testing"
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
