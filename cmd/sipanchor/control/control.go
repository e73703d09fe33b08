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
	"sipanchor/relay"
	"sipanchor/sip"
)

// Deps are what the control plane reads and drives.
type Deps struct {
	Version string
	Token   string // bearer token; "" = none required
	Proxy   *sip.Proxy
	Dialogs *dialog.Manager
	Relay   RelayEngine // the engine in use
	Events  *Events
	Log     *slog.Logger
	Bans    BanList    // flood bans; nil = none kept
	Traces  CallTraces // each call's SIP messages; nil = none kept
	// ReloadRelays re-reads the relay node table; nil when the engine has
	// none.
	ReloadRelays func() (int, error)
}

// RelayEngine is what the control plane reads of the relay engine in use
// and changes in it; relay.Builtin and ng.Client implement it.
type RelayEngine interface {
	Name() string // "builtin", "rtpengine"
	Nodes() []relay.NodeInfo
	// SetEnabled disables a node for new calls (calls on it stay) or
	// enables it again; relay.ErrUnknownNode when there is no such node.
	SetEnabled(node string, on bool) error
	// Placement is where a call's media is; false when nowhere.
	Placement(k relay.SessionKey) (relay.Placement, bool)
}

// Counters only some engines keep (type-asserted): the builtin engine
// owns ports and sees packets, rtpengine nodes fail and come back.
type (
	portCounter    interface{ PortPairs() (used, total int) }
	trafficCounter interface{ Traffic() relay.Traffic }
	changeCounter  interface{ Changes() uint64 }
)

// Handler is the whole HTTP surface.
func Handler(d Deps) http.Handler {
	a := &api{Deps: d, start: time.Now()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/health", a.health)
	mux.HandleFunc("GET /api/v1/sessions", a.sessions)
	mux.HandleFunc("GET /api/v1/sessions/{callid}", a.session)
	mux.HandleFunc("GET /api/v1/sessions/{callid}/trace", a.trace)
	mux.HandleFunc("POST /api/v1/sessions/{callid}/update", a.update)
	mux.HandleFunc("POST /api/v1/sessions/update", a.updateAll)
	mux.HandleFunc("DELETE /api/v1/dialogs/{callid}", a.teardown)
	mux.HandleFunc("GET /api/v1/registrations", a.registrations)
	mux.HandleFunc("DELETE /api/v1/registrations/{aor}", a.unregister)
	mux.HandleFunc("GET /api/v1/relays", a.relays)
	mux.HandleFunc("POST /api/v1/relays/{node}/{action}", a.relayAction)
	mux.HandleFunc("POST /api/v1/relays/reload", a.reload)
	mux.HandleFunc("GET /api/v1/events", a.events)
	mux.HandleFunc("GET /api/v1/bans", a.bans)
	mux.HandleFunc("DELETE /api/v1/bans/{ip}", a.unban)
	mux.HandleFunc("GET /metrics", a.metrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return withToken(d.Token, withBodyLimit(mux))
}

type api struct {
	Deps
	start time.Time
}

func (a *api) health(w http.ResponseWriter, r *http.Request) {
	nodes := a.Relay.Nodes()
	h := map[string]any{
		"status": "ok", "live": true, "ready": true, "version": a.Version, "uptime_s": int(time.Since(a.start).Seconds()),
		"listen": a.Proxy.Addrs(), "dialogs": a.Dialogs.Count(), "engine": a.Relay.Name(), "relay_sessions": sessionsOn(nodes),
		"relay_nodes": a.nodeViews(nodes), "goroutines": runtime.NumGoroutine(), "open_files": openFiles(),
	}
	if pc, ok := a.Relay.(portCounter); ok {
		h["port_pairs_used"], h["port_pairs_total"] = pc.PortPairs()
	}
	writeJSON(w, http.StatusOK, h)
}

func sessionsOn(nodes []relay.NodeInfo) int {
	n := 0
	for _, x := range nodes {
		n += x.Sessions
	}
	return n
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

// nodeViews is the JSON of relay nodes, with port pairs for an engine
// that owns ports (the builtin engine is one node).
func (a *api) nodeViews(nodes []relay.NodeInfo) []map[string]any {
	out := []map[string]any{}
	for _, n := range nodes {
		v := map[string]any{"node": n.Name, "engine": a.Relay.Name(), "set": n.Set, "weight": n.Weight, "enabled": n.Enabled,
			"admin_disabled": n.AdminDisabled, "down": n.Down, "sessions": n.Sessions}
		if pc, ok := a.Relay.(portCounter); ok {
			v["port_pairs_used"], v["port_pairs_total"] = pc.PortPairs()
		}
		out = append(out, v)
	}
	return out
}

func (a *api) relays(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.nodeViews(a.Relay.Nodes()))
}

func (a *api) relayAction(w http.ResponseWriter, r *http.Request) {
	node, action := r.PathValue("node"), r.PathValue("action")
	if action != "enable" && action != "disable" {
		fail(w, http.StatusNotFound, "no such action "+action+" (enable or disable)")
		return
	}
	if err := a.Relay.SetEnabled(node, action == "enable"); err != nil {
		fail(w, http.StatusNotFound, err.Error())
		return
	}
	a.Log.Info("relay node "+action+"d by API", "node", node)
	a.Events.Publish(Event{Type: "relay.node", Node: node, Enabled: action == "enable", Time: time.Now()})
	a.relays(w, r)
}

func (a *api) reload(w http.ResponseWriter, r *http.Request) {
	if a.ReloadRelays == nil {
		// An engine without a node table has nothing to reload.
		writeJSON(w, http.StatusOK, map[string]any{"reloaded": 0, "engine": a.Relay.Name()})
		return
	}
	n, err := a.ReloadRelays()
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": n, "engine": a.Relay.Name()})
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
