package control

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"sipanchor/config"
	"sipanchor/dialog"
	"sipanchor/media"
	"sipanchor/relay"
	"sipanchor/sip"
	"sipanchor/store"
)

// realAPI is the control plane over a real proxy (SIP on a loopback
// port), dialog layer and builtin relay, with no calls.
func realAPI(tb testing.TB) http.Handler {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	db, err := store.Open(ctx, filepath.Join(tb.TempDir(), "sipanchor.db"))
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Parse("api.toml", []byte("[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\n"))
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Listeners[0].Addr = netip.MustParseAddrPort("127.0.0.1:0") // any free port
	lo := netip.MustParseAddr("127.0.0.1")
	rl, err := media.NewRelay(media.Config{PortMin: 44140, PortMax: 44159, Bind: lo, Advertise: lo, Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	engine := relay.NewBuiltin(rl)
	dialogs := dialog.NewManager(engine, dialog.Config{Log: log})
	p, err := sip.New(ctx, sip.Options{Config: cfg, DB: db, Log: log, Dialogs: dialogs})
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan struct{})
	go func() { p.Serve(ctx); close(served) }()
	tb.Cleanup(func() {
		cancel()
		<-served
		rl.Close()
		db.Close()
	})
	return Handler(Deps{Proxy: p, Dialogs: dialogs, Relay: engine, Events: NewEvents("", log), Log: log})
}

// FuzzUpdateBody posts bodies to the two endpoints that read one (update
// a call, update all calls) through the real handler. Properties: never a
// 5xx, always a JSON reply, an error reply says why, and a body taken
// (anything but 400/413) is one well-formed JSON value.
func FuzzUpdateBody(f *testing.F) {
	for _, b := range []string{"", "{}", "{not json", `{"colour": "blue"}`, `{"caller_flags": "replace-orign"}`,
		`{"node": "elsewhere"}`, `{"filter": {"colour": "blue"}}`, `{"caller_flags": "in-iface=internal"}`,
		`{"engine": "builtin", "set": "default", "node": "local", "caller_flags": "replace-origin", "callee_flags": "symmetric"}`,
		`{"engine": "rtpengine", "filter": {"engine": "rtpengine", "node": "udp:127.0.0.1:2223"}}`, `{"filter": {"callid": "c1"}}`} {
		f.Add([]byte(b), false)
		f.Add([]byte(b), true)
	}
	h := realAPI(f)
	f.Fuzz(func(t *testing.T, body []byte, all bool) {
		path := "/api/v1/sessions/c1/update"
		if all {
			path = "/api/v1/sessions/update"
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", path, bytes.NewReader(body)))
		res := w.Result()
		var reply any
		if err := json.Unmarshal(w.Body.Bytes(), &reply); err != nil || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("POST %s %q: %d, reply not JSON (%v): %q", path, body, res.StatusCode, err, w.Body.Bytes())
		}
		if !slices.Contains([]int{200, 400, 404, 409, 413}, res.StatusCode) {
			t.Fatalf("POST %s %q: %d %s", path, body, res.StatusCode, w.Body.Bytes())
		}
		if e, _ := reply.(map[string]any); res.StatusCode != 200 && (e == nil || e["error"] == "" || e["error"] == nil) {
			t.Fatalf("POST %s %q: %d without an error message: %s", path, body, res.StatusCode, w.Body.Bytes())
		}
		if res.StatusCode != 400 && res.StatusCode != 413 && len(bytes.TrimSpace(body)) > 0 && !json.Valid(body) {
			t.Fatalf("POST %s %q: taken (%d), but it is not one JSON value", path, body, res.StatusCode)
		}
	})
}
