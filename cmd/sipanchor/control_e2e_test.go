package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ctl runs `sipanchor ctl` against p and returns stdout.
func (p *proxy) ctl(args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(binPath, append([]string{"ctl", "--api", p.api}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// session reads GET /api/v1/sessions/{callID}, with its diagnosis.
func (p *proxy) session(callID string) apiSession {
	p.t.Helper()
	resp, err := http.Get(p.api + "/api/v1/sessions/" + callID)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s apiSession
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		p.t.Fatalf("GET session %s: %v", callID, err)
	}
	return s
}

type apiSession struct {
	CallID  string `json:"call_id"`
	State   string `json:"state"`
	Streams []struct {
		Caller struct {
			Port      int    `json:"port"`
			PacketsIn uint64 `json:"packets_in"`
			Latched   string `json:"latched"`
			SDPAddr   string `json:"sdp_addr"`
		} `json:"caller"`
		Callee struct {
			Port      int    `json:"port"`
			PacketsIn uint64 `json:"packets_in"`
		} `json:"callee"`
	} `json:"streams"`
	Diagnosis []string `json:"diagnosis"`
}

func TestCtlSessionsAndTeardown(t *testing.T) {
	p := startProxy(t, "")
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')

	sessions := func() []apiSession {
		t.Helper()
		out, err := p.ctl("--json", "sessions")
		if err != nil {
			t.Fatal(err)
		}
		var ss []apiSession
		if err := json.Unmarshal([]byte(out), &ss); err != nil {
			t.Fatalf("ctl sessions --json: %v\n%s", err, out)
		}
		return ss
	}
	ss := sessions()
	if len(ss) != 1 || ss[0].CallID != c.dc.callID || len(ss[0].Streams) != 1 {
		t.Fatalf("ctl sessions: %+v", ss)
	}
	before := ss[0].Streams[0]
	if before.Caller.Port != int(c.toAlice.Port()) || before.Callee.Port != int(c.toBob.Port()) {
		t.Errorf("ports %d/%d, the UAs were given %d/%d", before.Caller.Port, before.Callee.Port, c.toAlice.Port(), c.toBob.Port())
	}
	for i := range 5 {
		c.twoWay(t, byte('b'+i*3))
	}
	after := sessions()[0].Streams[0]
	if after.Caller.PacketsIn < before.Caller.PacketsIn+10 || after.Callee.PacketsIn < before.Callee.PacketsIn+5 {
		t.Errorf("counters did not grow: caller %d → %d, callee %d → %d", before.Caller.PacketsIn, after.Caller.PacketsIn, before.Callee.PacketsIn, after.Callee.PacketsIn)
	}

	// The human table and the per-call view with its diagnosis.
	table, err := p.ctl("sessions")
	if err != nil || !strings.Contains(table, c.dc.callID) || !strings.Contains(table, "CALLER PKTS") {
		t.Errorf("ctl sessions table: %v\n%s", err, table)
	}
	one, err := p.ctl("session", c.dc.callID)
	if err != nil || !strings.Contains(one, "caller → callee: media flowing") ||
		!strings.Contains(one, "but its SDP says 192.168.1.50:") || !strings.Contains(one, "(NAT, latched)") {
		t.Errorf("ctl session: %v\n%s", err, one)
	}
	if _, err := p.ctl("session", "no-such-call"); err == nil || !strings.Contains(err.Error(), "no anchored call") {
		t.Errorf("unknown call-id: %v", err)
	}

	// Teardown: BYE to both ends, and the session is gone.
	if out, err := p.ctl("teardown", c.dc.callID); err != nil {
		t.Fatalf("ctl teardown: %v %s", err, out)
	}
	c.alice.okTo(c.alice.recv("BYE", isRequest("BYE")))
	c.bob.okTo(c.bob.recv("BYE", isRequest("BYE")))
	p.waitIdle("after teardown")
	if ss := sessions(); len(ss) != 0 {
		t.Errorf("after teardown: %+v", ss)
	}
}

func TestDiagnosisOneWay(t *testing.T) {
	p := startProxy(t, "")
	c := setupAnchoredCall(t, p)
	// Only the caller talks: the callee's side is what the diagnosis names.
	for range 3 {
		c.aRTP.sendTo(c.toAlice, 'a')
	}
	stranger := newRTP(t, "127.0.0.9")
	stranger.sendTo(c.toAlice, 'x')
	// Until the relay has counted all four packets.
	var s apiSession
	eventually(t, 3*time.Second, func() bool {
		s = p.session(c.dc.callID)
		return len(s.Streams) == 1 && s.Streams[0].Caller.PacketsIn == 3 &&
			strings.Contains(strings.Join(s.Diagnosis, "\n"), "stranger")
	}, "the relay has not counted 3 packets and a stranger: %+v", &s)
	out, err := p.ctl("--json", "session", c.dc.callID)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(s.Diagnosis, "\n")
	for _, want := range []string{"callee has sent no media since the call was answered", "packets from a stranger to caller's port dropped: 1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("diagnosis lacks %q:\n%s", want, joined)
		}
	}
}

func TestMetricsMatchTraffic(t *testing.T) {
	p := startProxy(t, "")
	c := setupAnchoredCall(t, p)
	const n = 20
	for range n {
		c.twoWay(t, 'm') // 3 packets relayed each round
	}
	c.alice.request(c.dc, "BYE")
	c.bob.okTo(c.bob.recv("BYE", isRequest("BYE")))
	c.alice.recv("200 to BYE", isResponse(200, "BYE"))
	p.waitIdle("after BYE")

	resp, err := http.Get(p.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
	}
	get := func(name string, labels map[string]string) float64 {
		t.Helper()
		mf, ok := mfs[name]
		if !ok {
			t.Fatalf("no metric %s", name)
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sipanchor_sip_requests_total", map[string]string{"method": "INVITE"}, 1},
		{"sipanchor_sip_requests_total", map[string]string{"method": "REGISTER"}, 1},
		{"sipanchor_sip_requests_total", map[string]string{"method": "BYE"}, 1},
		{"sipanchor_sip_requests_total", map[string]string{"method": "ACK"}, 1},
		{"sipanchor_sip_responses_total", map[string]string{"method": "INVITE", "status": "200"}, 1},
		{"sipanchor_sip_responses_total", map[string]string{"method": "BYE", "status": "200"}, 1},
		{"sipanchor_sip_transaction_seconds", map[string]string{"method": "INVITE"}, 1},
		{"sipanchor_calls_total", map[string]string{"outcome": "answered"}, 1},
		{"sipanchor_calls_active", nil, 0},
		{"sipanchor_registrations", nil, 1},
		{"sipanchor_relay_sessions", nil, 0},
		{"sipanchor_relay_port_pairs", map[string]string{"state": "used"}, 0},
		{"sipanchor_relay_packets_total", nil, 3 * n},
		{"sipanchor_relay_bytes_total", nil, 3 * n * 172},
		{"sipanchor_relay_dropped_total", map[string]string{"reason": "stranger"}, 0},
	}
	for _, c := range checks {
		if got := get(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestEventsInOrder(t *testing.T) {
	p := startProxy(t, "")
	resp, err := http.Get(p.api + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev map[string]any
				if json.Unmarshal([]byte(data), &ev) == nil {
					events <- ev
				}
			}
		}
		close(events)
	}()
	c := setupAnchoredCall(t, p)
	c.alice.request(c.dc, "BYE")
	c.bob.okTo(c.bob.recv("BYE", isRequest("BYE")))
	c.alice.recv("200 to BYE", isResponse(200, "BYE"))
	var got []string
	timeout := time.After(3 * time.Second)
	for len(got) < 3 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended after %v", got)
			}
			if ev["call_id"] != c.dc.callID {
				t.Errorf("event for another call: %v", ev)
			}
			got = append(got, ev["type"].(string))
		case <-timeout:
			t.Fatalf("events so far %v", got)
		}
	}
	if strings.Join(got, ",") != "call.start,call.answer,call.end" {
		t.Errorf("events %v, want start, answer, end", got)
	}
}

func TestAPIAccessNeedsToken(t *testing.T) {
	requireE2E(t)
	// A public listen address without a token: refused at start.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("[sip]\nlisten = [\"udp:127.0.0.1:%d\"]\n[api]\nlisten = \"0.0.0.0:%d\"\n", freePort(t), freePort(t))), 0o644)
	out, err := exec.Command(binPath, "serve", "-c", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "api.listen") || !strings.Contains(string(out), "api.token") {
		t.Fatalf("public API without token: %v %s", err, out)
	}

	// With a token, requests without it get 401 with a JSON error.
	p := startProxyWithAPIToken(t, "s3cret")
	for _, path := range []string{"/api/v1/sessions", "/metrics", "/api/v1/health"} {
		resp, err := http.Get(p.api + path)
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 401 || e["error"] == "" {
			t.Errorf("%s without token: %d %v", path, resp.StatusCode, e)
		}
	}
	if _, err := p.ctl("sessions"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("ctl without token: %v", err)
	}
	if out, err := p.ctl("--token", "s3cret", "stats"); err != nil || !strings.Contains(out, `"status": "ok"`) {
		t.Errorf("ctl with token: %v %s", err, out)
	}
}

func TestAPIErrors(t *testing.T) {
	p := startProxy(t, "")
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/api/v1/sessions/x/update", "{not json", 400},
		{"POST", "/api/v1/sessions/x/update", `{"colour": "blue"}`, 400},
		{"POST", "/api/v1/sessions/x/update", `{"caller_flags": "replace-orign"}`, 400},
		{"POST", "/api/v1/sessions/x/update", `{"node": "elsewhere"}`, 400},
		{"POST", "/api/v1/sessions/x/update", `{}`, 404},
		{"POST", "/api/v1/sessions/update", `{"filter": {"colour": "blue"}}`, 400},
		{"GET", "/api/v1/sessions?colour=blue", "", 400},
		{"GET", "/api/v1/sessions/unknown", "", 404},
		{"DELETE", "/api/v1/dialogs/unknown", "", 404},
		{"DELETE", "/api/v1/registrations/nobody@example.test", "", 404},
		{"POST", "/api/v1/relays/elsewhere/disable", "", 404},
		{"GET", "/api/v1/nothing", "", 404},
	} {
		req, _ := http.NewRequest(tc.method, p.api+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.want || e["error"] == "" {
			t.Errorf("%s %s %s: %d %v, want %d with a JSON error", tc.method, tc.path, tc.body, resp.StatusCode, e, tc.want)
		}
	}
}

func TestRelayDisableDrainsNewCalls(t *testing.T) {
	p := startProxy(t, "")
	if out, err := p.ctl("relay", "disable", "local"); err != nil || !strings.Contains(out, "false") {
		t.Fatalf("ctl relay disable: %v %s", err, out)
	}
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP := newRTP(t, "127.0.0.2")
	alice.inviteSDP("sip:bob@example.test", strings.ReplaceAll(sdpWith(aRTP.port(), ""), "192.168.1.50", "127.0.0.2"))
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	if got := mediaOf(t, inv.Body()); got.Port() != uint16(aRTP.port()) {
		t.Errorf("a call was anchored on a disabled node: %s", got)
	}
	if out, err := p.ctl("relay", "enable", "local"); err != nil || !strings.Contains(out, "true") {
		t.Errorf("ctl relay enable: %v %s", err, out)
	}
}

// TestCtlUpdateMovesMedia: `ctl update` re-anchors a live call. Both UAs
// get a re-INVITE pointing at new relay ports and keep talking through
// them; the old ports stop forwarding; and later in-dialog requests from
// either UA still reach the other with a CSeq above the re-INVITE's.
func TestCtlUpdateMovesMedia(t *testing.T) {
	p := startProxy(t, "")
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	oldAlice, oldBob := c.toAlice, c.toBob

	done := make(chan error, 1)
	go func() {
		_, err := p.ctl("update", c.dc.callID, "--callee-flags", "replace-origin")
		done <- err
	}()
	invB := c.bob.recv("re-INVITE (move)", isRequest("INVITE")).(*sip.Request)
	invA := c.alice.recv("re-INVITE (move)", isRequest("INVITE")).(*sip.Request)
	c.toBob, c.toAlice = mediaOf(t, invB.Body()), mediaOf(t, invA.Body())
	if c.toBob == oldBob || c.toAlice == oldAlice {
		t.Fatalf("re-INVITEs point at the old ports %s / %s", c.toBob, c.toAlice)
	}
	if !strings.Contains(string(invB.Body()), "o=- 1 1 IN IP4 127.0.0.1") {
		t.Errorf("callee flags given to ctl update (replace-origin) not applied:\n%s", invB.Body())
	}
	if tag, _ := invB.From().Params.Get("tag"); tag != c.dc.localTag {
		t.Errorf("callee's re-INVITE From tag %q, want the caller's %q", tag, c.dc.localTag)
	}
	if tag, _ := invA.To().Params.Get("tag"); tag != c.dc.localTag {
		t.Errorf("caller's re-INVITE To tag %q, want its own %q", tag, c.dc.localTag)
	}
	c.bob.respondSDP(invB, 200, "OK", sdpWith(c.bRTP.port(), ""))
	c.alice.respondSDP(invA, 200, "OK", sdpWith(c.aRTP.port(), ""))
	c.bob.recv("ACK of the move", isRequest("ACK"))
	c.alice.recv("ACK of the move", isRequest("ACK"))
	if err := <-done; err != nil {
		t.Fatalf("ctl update: %v", err)
	}
	c.twoWay(t, 'n') // through the new ports
	if out, err := p.ctl("--json", "sessions"); err != nil || !strings.Contains(out, `"flags": "replace-origin"`) {
		t.Errorf("session does not show the callee's new flags: %v\n%s", err, out)
	}
	c.aRTP.sendTo(oldAlice, 'o')
	c.bRTP.none('o', 300*time.Millisecond)
	if relayPortsOpen(t, oldAlice, oldBob) != 0 {
		t.Error("old relay ports still bound after the move")
	}

	// The callee saw the move as CSeq N from the caller: the caller's own
	// next request must arrive above it, and its response come back with
	// the caller's own number.
	c.alice.requestBody(c.dc, "INVITE", sdpWith(c.aRTP.port(), ""))
	re := c.bob.recv("caller's re-INVITE after the move", isRequest("INVITE")).(*sip.Request)
	if re.CSeq().SeqNo <= invB.CSeq().SeqNo {
		t.Errorf("caller's re-INVITE reached the callee with CSeq %d, not above the move's %d", re.CSeq().SeqNo, invB.CSeq().SeqNo)
	}
	c.bob.respondSDP(re, 200, "OK", sdpWith(c.bRTP.port(), ""))
	ok := c.alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	if ok.CSeq().SeqNo != uint32(c.dc.cseq) {
		t.Errorf("200 reached the caller with CSeq %d, it sent %d", ok.CSeq().SeqNo, c.dc.cseq)
	}
	c.alice.request(c.dc, "ACK")
	ack := c.bob.recv("ACK", isRequest("ACK")).(*sip.Request)
	if ack.CSeq().SeqNo != re.CSeq().SeqNo {
		t.Errorf("ACK CSeq %d, its INVITE's %d", ack.CSeq().SeqNo, re.CSeq().SeqNo)
	}
	c.twoWay(t, 'q')
	// And the callee hangs up: its BYE lands above the move's CSeq at the caller.
	c.bob.request(c.dd, "BYE")
	bye := c.alice.recv("BYE", isRequest("BYE")).(*sip.Request)
	if bye.CSeq().SeqNo <= invA.CSeq().SeqNo {
		t.Errorf("callee's BYE CSeq %d not above the move's %d", bye.CSeq().SeqNo, invA.CSeq().SeqNo)
	}
	c.alice.okTo(bye)
	c.bob.recv("200 to BYE", isResponse(200, "BYE"))
	p.waitIdle("after BYE")
}

func TestWebhookReceivesEvents(t *testing.T) {
	got := make(chan map[string]any, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		if json.NewDecoder(r.Body).Decode(&ev) == nil {
			got <- ev
		}
	}))
	defer srv.Close()
	p := startProxy(t, "")
	p.stop()
	// Restart with the webhook set (the harness's [api] table takes it).
	cfg, _ := os.ReadFile(p.cfgPath)
	_ = os.WriteFile(p.cfgPath, []byte(strings.Replace(string(cfg), "[api]\n", "[api]\nwebhook = \""+srv.URL+"\"\n", 1)), 0o644)
	p.start()
	c := setupAnchoredCall(t, p)
	c.alice.request(c.dc, "BYE")
	c.bob.okTo(c.bob.recv("BYE", isRequest("BYE")))
	c.alice.recv("200 to BYE", isResponse(200, "BYE"))
	var types []string
	timeout := time.After(3 * time.Second)
	for len(types) < 3 {
		select {
		case ev := <-got:
			types = append(types, fmt.Sprint(ev["type"]))
		case <-timeout:
			t.Fatalf("webhook got %v", types)
		}
	}
	if strings.Join(types, ",") != "call.start,call.answer,call.end" {
		t.Errorf("webhook events %v", types)
	}
}
