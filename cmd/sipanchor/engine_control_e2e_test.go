package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// apiCall sends one API request (with the proxy's token, if it has one)
// and decodes its JSON reply into out.
func (p *proxy) apiCall(method, path, body string, out any) int {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.api+path, strings.NewReader(body))
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
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

// answerReinvites answers every INVITE u receives with 200 and an SDP on
// rtpPort, recording the Call-IDs, until stop is called.
func answerReinvites(u *ua, ip string, rtpPort int) (calls func() []string, stop func()) {
	var mu sync.Mutex
	var got []string
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case m := <-u.in:
				if r, ok := m.(*sip.Request); ok && r.Method == sip.INVITE {
					mu.Lock()
					got = append(got, r.CallID().Value())
					mu.Unlock()
					u.respondSDP(r, 200, "OK", strings.ReplaceAll(sdpWith(rtpPort, ""), "192.168.1.50", ip))
				}
			}
		}
	}()
	return func() []string {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(got)
		}, func() {
			close(quit)
			<-done
		}
}

type engineSession struct {
	CallID    string   `json:"call_id"`
	Engine    string   `json:"engine"`
	Set       string   `json:"set"`
	Node      string   `json:"node"`
	Diagnosis []string `json:"diagnosis"`
}

// TestRtpengineControlPlane: with engine = "rtpengine" the API shows and
// filters calls by the set and node that really hold them, moves only the
// calls a filter names, reports the engine in use in /health and
// /metrics, and does not invent a silence when rtpengine's stats lack a
// packet time.
func TestRtpengineControlPlane(t *testing.T) {
	x, y := startRtpengine(t, 47800), startRtpengine(t, 48000)
	nodeX, nodeY := fmt.Sprintf("udp:127.0.0.1:%d", x.ngPort), fmt.Sprintf("udp:127.0.0.1:%d", y.ngPort)
	p := startProxy(t, rtpengineConfig(nodeX+"=1", nodeY+"=1"))
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	relayAction := func(node, action string) {
		t.Helper()
		if code := p.apiCall("POST", "/api/v1/relays/"+url.PathEscape(node)+"/"+action, "", nil); code != 200 {
			t.Fatalf("%s %s: %d", action, node, code)
		}
	}
	relayAction(nodeY, "disable")
	c1, _, _, atAlice1 := rtpCall(t, alice, bob, aRTP, bRTP, "onx")
	relayAction(nodeY, "enable")
	relayAction(nodeX, "disable")
	c2, _, _, _ := rtpCall(t, alice, bob, aRTP, bRTP, "ony")
	relayAction(nodeX, "enable")
	if !x.hasCall(t, c1.callID) || !y.hasCall(t, c2.callID) {
		t.Fatalf("calls not placed as arranged: x %v, y %v", x.calls(t), y.calls(t))
	}

	var all []engineSession
	p.apiCall("GET", "/api/v1/sessions", "", &all)
	where := map[string]string{}
	for _, s := range all {
		where[s.CallID] = s.Engine + " set " + s.Set + " node " + s.Node
	}
	if want := "rtpengine set 0 node " + nodeX; where[c1.callID] != want {
		t.Errorf("call on X listed as %q, want %q", where[c1.callID], want)
	}
	if want := "rtpengine set 0 node " + nodeY; where[c2.callID] != want {
		t.Errorf("call on Y listed as %q, want %q", where[c2.callID], want)
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"engine=rtpengine", []string{c1.callID, c2.callID}},
		{"engine=builtin", nil},
		{"node=" + url.QueryEscape(nodeX), []string{c1.callID}},
		{"set=0&node=" + url.QueryEscape(nodeY), []string{c2.callID}},
		{"set=1", nil},
	} {
		var got []engineSession
		if code := p.apiCall("GET", "/api/v1/sessions?"+tc.query, "", &got); code != 200 {
			t.Errorf("GET /sessions?%s: %d", tc.query, code)
		}
		var ids []string
		for _, s := range got {
			ids = append(ids, s.CallID)
		}
		slices.Sort(ids)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(ids, want) {
			t.Errorf("GET /sessions?%s = %v, want %v", tc.query, ids, want)
		}
	}

	// Media on call 1, then its diagnosis.
	toAlice := mediaOf(t, []byte(atAlice1))
	for range 3 {
		aRTP.sendTo(toAlice, 'd')
	}
	var one engineSession
	eventually(t, 3*time.Second, func() bool {
		p.apiCall("GET", "/api/v1/sessions/"+c1.callID, "", &one)
		return strings.Contains(strings.Join(one.Diagnosis, "\n"), "caller")
	}, "%s", "no diagnosis of the caller")
	if d := strings.Join(one.Diagnosis, "\n"); strings.Contains(d, "2562047h") || one.Node != nodeX {
		t.Errorf("GET /sessions/%s: node %q, diagnosis:\n%s", c1.callID, one.Node, d)
	}

	// /health and /metrics describe rtpengine, not the idle builtin relay.
	var h map[string]any
	p.apiCall("GET", "/api/v1/health", "", &h)
	if h["engine"] != "rtpengine" || h["relay_sessions"] != 2.0 || h["port_pairs_used"] != nil || h["relay_nodes"] == nil {
		t.Errorf("health in rtpengine mode: engine %v relay_sessions %v port_pairs_used %v relay_nodes %v",
			h["engine"], h["relay_sessions"], h["port_pairs_used"], h["relay_nodes"])
	}
	resp, err := http.Get(p.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`sipanchor_relay_node_calls{node=%q,set="0"} 1`, nodeX),
		fmt.Sprintf(`sipanchor_relay_node_calls{node=%q,set="0"} 1`, nodeY),
		`sipanchor_relay_sessions{engine="rtpengine"} 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, builtinOnly := range []string{"sipanchor_relay_port_pairs", "sipanchor_relay_packets_total"} {
		if strings.Contains(string(body), builtinOnly) {
			t.Errorf("/metrics reports the idle builtin relay's %s in rtpengine mode", builtinOnly)
		}
	}

	// Re-anchor only the calls on node X.
	aCalls, aStop := answerReinvites(alice, "127.0.0.2", aRTP.port())
	bCalls, bStop := answerReinvites(bob, "127.0.0.3", bRTP.port())
	var moved []struct {
		CallID string `json:"call_id"`
		Moved  bool   `json:"moved"`
		Error  string `json:"error"`
	}
	body2 := fmt.Sprintf(`{"engine": "rtpengine", "filter": {"engine": "rtpengine", "node": %q}}`, nodeX)
	code := p.apiCall("POST", "/api/v1/sessions/update", body2, &moved)
	var none []any
	codeB := p.apiCall("POST", "/api/v1/sessions/update", `{"filter": {"engine": "builtin"}}`, &none)
	aStop()
	bStop()
	if code != 200 || len(moved) != 1 || moved[0].CallID != c1.callID || !moved[0].Moved {
		t.Errorf("update filtered on node X: %d %+v, want only %s moved", code, moved, c1.callID)
	}
	for who, got := range map[string][]string{"caller": aCalls(), "callee": bCalls()} {
		if slices.Contains(got, c2.callID) {
			t.Errorf("the %s got a re-INVITE for the call on node Y: %v", who, got)
		}
	}
	if codeB != 200 || len(none) != 0 {
		t.Errorf("update filtered on engine builtin in rtpengine mode: %d %v, want 200 []", codeB, none)
	}
}

// TestRtpengineAdminDisableOutlivesProber: node X (weight 1) stops
// answering, is found dead and disabled, and the admin disables it too.
// When X answers pings again the prober brings it back from dead, but the
// admin's disable stays: new calls go to Y until the admin enables X.
func TestRtpengineAdminDisableOutlivesProber(t *testing.T) {
	x, y := startRtpengine(t, 48200), startRtpengine(t, 48400)
	nodeX, nodeY := fmt.Sprintf("udp:127.0.0.1:%d", x.ngPort), fmt.Sprintf("udp:127.0.0.1:%d", y.ngPort)
	p := startProxy(t, rtpengineConfig(nodeX+"=1", nodeY+"=0"))
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	callOn := func(tag string) *rtpengineDaemon {
		t.Helper()
		_, _, atBob, _ := rtpCall(t, alice, bob, aRTP, bRTP, tag)
		if x.owns(mediaOf(t, []byte(atBob)).Port()) {
			return x
		}
		return y
	}

	_ = syscall.Kill(-x.cmd.Process.Pid, syscall.SIGSTOP)
	t.Cleanup(func() { _ = syscall.Kill(-x.cmd.Process.Pid, syscall.SIGCONT) })
	if callOn("dead") != y {
		t.Fatal("a call went to the stopped node")
	}
	if code := p.apiCall("POST", "/api/v1/relays/"+url.PathEscape(nodeX)+"/disable", "", nil); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	_ = syscall.Kill(-x.cmd.Process.Pid, syscall.SIGCONT)
	eventually(t, 5*time.Second, func() bool { return len(p.logLines("rtpengine node back")) > 0 }, "%s", "the prober never found node X answering")

	var nodes []map[string]any
	p.apiCall("GET", "/api/v1/relays", "", &nodes)
	for _, n := range nodes {
		if n["node"] == nodeX && n["enabled"] != false {
			t.Errorf("the prober undid the admin's disable: %v", n)
		}
	}
	for i := range 3 {
		if callOn(fmt.Sprint("after", i)) != y {
			t.Errorf("call %d went to the admin-disabled node X", i)
		}
	}
	if code := p.apiCall("POST", "/api/v1/relays/"+url.PathEscape(nodeX)+"/enable", "", nil); code != 200 {
		t.Fatalf("enable: %d", code)
	}
	if callOn("enabled") != x {
		t.Error("after the admin's enable a call did not go to X (weight 1 against 0)")
	}
}
