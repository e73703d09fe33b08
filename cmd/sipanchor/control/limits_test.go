package control

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestOversizedBodyRefused: a 1 MiB JSON body to any endpoint that takes
// one gets 413 with a JSON error, and the server goes on serving.
func TestOversizedBodyRefused(t *testing.T) {
	srv := httptest.NewServer(Handler(Deps{Log: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	big := `{"caller_flags": "` + strings.Repeat("x", 1<<20) + `"}`
	for _, path := range []string{"/api/v1/sessions/update", "/api/v1/sessions/c1/update"} {
		for _, chunked := range []bool{false, true} {
			var body io.Reader = strings.NewReader(big)
			if chunked { // no Content-Length: the limit must hold while reading
				body = io.MultiReader(body)
			}
			resp, err := http.Post(srv.URL+path, "application/json", body)
			if err != nil {
				t.Fatalf("POST %s: %v", path, err)
			}
			var e map[string]string
			derr := json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || derr != nil || !strings.Contains(e["error"], "too large") {
				t.Errorf("POST %s (chunked %v) with 1 MiB: %d %v (%v), want 413 and a JSON error", path, chunked, resp.StatusCode, e, derr)
			}
		}
	}
	resp, err := http.Post(srv.URL+"/api/v1/nothing", "application/json", bytes.NewReader([]byte("{}")))
	if err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("next request: %d, want 404", resp.StatusCode)
	}
}

// TestBodyLimitWithToken: the limit holds behind the bearer token too, and
// a request without the token gets 401 whatever its size.
func TestBodyLimitWithToken(t *testing.T) {
	srv := httptest.NewServer(Handler(Deps{Token: "t0k", Log: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	big := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		auth string
		want int
	}{{"", http.StatusUnauthorized}, {"Bearer t0k", http.StatusRequestEntityTooLarge}} {
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/sessions/update", strings.NewReader(big))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("auth %q: %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
	}
}
