// Package control is sipanchor's control plane: the HTTP JSON API under
// /api/v1, Prometheus metrics and the event stream. It reads state through
// the packages' own interfaces (dialog, relay, media, sip) and changes it
// only through them: teardown ends a dialog as a media timeout would.
package control

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"sipanchor/dialog"
	"sipanchor/media"
	"sipanchor/relay/ng"
	"sipanchor/sip"
)

// Deps are what the control plane reads and drives.
type Deps struct {
	Version string
	Token   string // bearer token; "" = none required
	Proxy   *sip.Proxy
	Dialogs *dialog.Manager
	Relay   *media.Relay
	Events  *Events
	Log     *slog.Logger
	// Engine is "builtin" or "rtpengine"; RTPEngine is set for the latter.
	Engine    string
	RTPEngine *ng.Client
	// ReloadRelays re-reads the relay_nodes table (rtpengine engine).
	ReloadRelays func() (int, error)
}

// Handler is the whole HTTP surface.
func Handler(d Deps) http.Handler {
	a := &api{Deps: d, start: time.Now()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/health", a.health)
	mux.HandleFunc("GET /api/v1/sessions", a.sessions)
	mux.HandleFunc("GET /api/v1/sessions/{callid}", a.session)
	mux.HandleFunc("POST /api/v1/sessions/{callid}/update", a.update)
	mux.HandleFunc("POST /api/v1/sessions/update", a.updateAll)
	mux.HandleFunc("DELETE /api/v1/dialogs/{callid}", a.teardown)
	mux.HandleFunc("GET /api/v1/registrations", a.registrations)
	mux.HandleFunc("DELETE /api/v1/registrations/{aor}", a.unregister)
	mux.HandleFunc("GET /api/v1/relays", a.relays)
	mux.HandleFunc("POST /api/v1/relays/{node}/{action}", a.relayAction)
	mux.HandleFunc("POST /api/v1/relays/reload", a.reload)
	mux.HandleFunc("GET /api/v1/events", a.events)
	mux.HandleFunc("GET /metrics", a.metrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return withToken(d.Token, mux)
}

type api struct {
	Deps
	start time.Time
}

// The builtin engine is one node in one set.
const (
	engineName = "builtin"
	setName    = "default"
	nodeName   = "local"
)

func (a *api) health(w http.ResponseWriter, r *http.Request) {
	used, total := a.Relay.PortPairs()
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "ok", "live": true, "ready": true, "version": a.Version, "uptime_s": int(time.Since(a.start).Seconds()),
		"listen": a.Proxy.Addrs(), "dialogs": a.Dialogs.Count(), "relay_sessions": a.Relay.Count(),
		"port_pairs_used": used, "port_pairs_total": total,
		"goroutines": runtime.NumGoroutine(), "open_files": openFiles(),
	})
}

func (a *api) teardown(w http.ResponseWriter, r *http.Request) {
	ds := a.Dialogs.ByCallID(r.PathValue("callid"))
	if len(ds) == 0 {
		fail(w, http.StatusNotFound, "no dialog with call-id "+r.PathValue("callid"))
		return
	}
	for _, d := range ds {
		a.Dialogs.Terminate(d, "teardown by API")
	}
	writeJSON(w, http.StatusOK, map[string]any{"ended": r.PathValue("callid"), "dialogs": len(ds)})
}

func (a *api) registrations(w http.ResponseWriter, r *http.Request) {
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
	for _, b := range a.Proxy.Location().All(now) {
		out = append(out, reg{b.AOR, b.Contact, int(b.Expires.Sub(now).Seconds()), b.Received.String(), b.Transport, b.NAT, b.UserAgent})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) unregister(w http.ResponseWriter, r *http.Request) {
	aor := r.PathValue("aor")
	n, err := a.Proxy.Location().RemoveAOR(r.Context(), aor)
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	if n == 0 {
		fail(w, http.StatusNotFound, "no bindings for "+aor)
		return
	}
	a.Log.Info("bindings removed by API", "aor", aor, "bindings", n)
	writeJSON(w, http.StatusOK, map[string]any{"aor": aor, "removed": n})
}

func (a *api) relays(w http.ResponseWriter, r *http.Request) {
	if a.RTPEngine != nil {
		out := []map[string]any{}
		for _, n := range a.RTPEngine.Nodes() {
			out = append(out, map[string]any{"node": n.Node, "engine": "rtpengine", "set": n.Set, "weight": n.Weight,
				"enabled": n.Enabled, "sessions": n.Calls})
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	used, total := a.Relay.PortPairs()
	writeJSON(w, http.StatusOK, []map[string]any{{
		"node": nodeName, "engine": engineName, "set": setName, "enabled": !a.Dialogs.Disabled(),
		"sessions": a.Relay.Count(), "port_pairs_used": used, "port_pairs_total": total, "weight": 1,
	}})
}

func (a *api) relayAction(w http.ResponseWriter, r *http.Request) {
	if a.RTPEngine != nil {
		on := r.PathValue("action") == "enable"
		if !on && r.PathValue("action") != "disable" {
			fail(w, http.StatusNotFound, "no such action "+r.PathValue("action")+" (enable or disable)")
			return
		}
		if !a.RTPEngine.SetEnabled(r.PathValue("node"), on) {
			fail(w, http.StatusNotFound, "no relay node "+r.PathValue("node"))
			return
		}
		a.Log.Info("relay node "+r.PathValue("action")+"d by API", "node", r.PathValue("node"))
		a.Events.Publish(Event{Type: "relay.node", Node: r.PathValue("node"), Enabled: on, Time: time.Now()})
		a.relays(w, r)
		return
	}
	if r.PathValue("node") != nodeName {
		fail(w, http.StatusNotFound, "no relay node "+r.PathValue("node")+" (the builtin engine is one node: "+nodeName+")")
		return
	}
	switch r.PathValue("action") {
	case "enable":
		a.Dialogs.SetDisabled(false)
	case "disable":
		a.Dialogs.SetDisabled(true)
	default:
		fail(w, http.StatusNotFound, "no such action "+r.PathValue("action")+" (enable or disable)")
		return
	}
	a.Log.Info("relay node "+r.PathValue("action")+"d by API", "node", nodeName)
	a.Events.Publish(Event{Type: "relay.node", Node: nodeName, Enabled: !a.Dialogs.Disabled(), Time: time.Now()})
	a.relays(w, r)
}

func (a *api) reload(w http.ResponseWriter, r *http.Request) {
	if a.RTPEngine == nil || a.ReloadRelays == nil {
		// The builtin engine has no node table to reload.
		writeJSON(w, http.StatusOK, map[string]any{"reloaded": 0, "engine": engineName})
		return
	}
	n, err := a.ReloadRelays()
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": n, "engine": "rtpengine"})
}

// withToken requires "Authorization: Bearer TOKEN" when a token is set.
func withToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sipanchor"`)
			fail(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// filters reads query parameters, rejecting any not in allowed.
func filters(r *http.Request, allowed ...string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range r.URL.Query() {
		if !slices.Contains(allowed, k) {
			return nil, errors.New("unknown filter " + k + " (allowed: " + strings.Join(allowed, ", ") + ")")
		}
		out[k] = v[0]
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// openFiles counts this process's open file descriptors (Linux), -1 if unknown.
func openFiles() int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(es)
}
