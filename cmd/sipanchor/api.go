package main

import (
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"time"

	"sipanchor/config"
	"sipanchor/dialog"
	"sipanchor/media"
	"sipanchor/sip"
)

// newAPI is the HTTP control API under /api/v1. JSON in and out; errors
// are {"error": "..."} with a 4xx/5xx status.
func newAPI(cfg *config.Config, p *sip.Proxy, rl *media.Relay, dialogs *dialog.Manager, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/health", func(w http.ResponseWriter, r *http.Request) {
		used, total := rl.PortPairs()
		writeJSON(w, http.StatusOK, map[string]any{
			"status": "ok", "version": version, "listen": p.Addrs(),
			"dialogs": dialogs.Count(), "relay_sessions": rl.Count(),
			"port_pairs_used": used, "port_pairs_total": total,
			"goroutines": runtime.NumGoroutine(), "open_files": openFiles(),
		})
	})
	mux.HandleFunc("GET /api/v1/registrations", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		type reg struct {
			AOR       string `json:"aor"`
			Contact   string `json:"contact"`
			Expires   int    `json:"expires"`
			Received  string `json:"received"`
			Transport string `json:"transport"`
			NAT       bool   `json:"nat"`
			UserAgent string `json:"user_agent,omitempty"`
		}
		out := []reg{}
		for _, b := range p.Location().All(now) {
			out = append(out, reg{b.AOR, b.Contact, int(b.Expires.Sub(now).Seconds()), b.Received.String(), b.Transport, b.NAT, b.UserAgent})
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	return withToken(cfg.API.Token, mux)
}

// openFiles counts this process's open file descriptors (Linux), -1 if unknown.
func openFiles() int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(es)
}

// withToken requires "Authorization: Bearer TOKEN" when a token is set.
func withToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
