package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// traceEntry is one message of GET /api/v1/sessions/{callid}/trace.
type traceEntry struct {
	Time      time.Time `json:"time"`
	Dir       string    `json:"dir"`
	Transport string    `json:"transport"`
	Local     string    `json:"local"`
	Remote    string    `json:"remote"`
	Seq       int       `json:"seq"`
	Size      int       `json:"size"`
	Message   string    `json:"message"`
}

// what names the message: "INVITE", or "180 INVITE" for a response.
func (e traceEntry) what() string {
	m, err := sip.ParseMessage([]byte(e.Message))
	if err != nil {
		return "unparsed " + statusLine(e.Message)
	}
	if r, ok := m.(*sip.Response); ok {
		return fmt.Sprintf("%d %s", r.StatusCode, r.CSeq().MethodName)
	}
	return string(m.(*sip.Request).Method)
}

func (e traceEntry) String() string {
	return fmt.Sprintf("#%d %s %s %s local %s remote %s", e.Seq, e.Dir, e.Transport, e.what(), e.Local, e.Remote)
}

// traceOf reads a call's trace: the status, and the entries on a 200.
func (p *proxy) traceOf(callID string) ([]traceEntry, int) {
	p.t.Helper()
	var es []traceEntry
	code := p.apiCall("GET", "/api/v1/sessions/"+url.PathEscape(callID)+"/trace", "", &es)
	return es, code
}

// step is a message a trace must have: its direction, what it is (as
// traceEntry.what) and the peer's address.
type step struct{ dir, what, remote string }

// missingStep is the first step not found in es after the steps before
// it, "" when all are there in that order (other messages may be between).
func missingStep(es []traceEntry, steps []step) string {
	i := 0
	for _, e := range es {
		if i < len(steps) && e.Dir == steps[i].dir && e.Remote == steps[i].remote && e.what() == steps[i].what {
			i++
		}
	}
	if i == len(steps) {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "no %v after the steps before it, in:", steps[i])
	for _, e := range es {
		b.WriteString("\n  " + e.String())
	}
	return b.String()
}

// lastSeen is what a wait saw last, printed as it was when it fails.
type lastSeen string

func (l *lastSeen) String() string { return string(*l) }

// callLadder is what the proxy receives and sends for a call from caller
// to callee (call, then the caller's BYE).
func callLadder(caller, callee *ua) []step {
	a, b := caller.local.String(), callee.local.String()
	return []step{
		{"in", "INVITE", a}, {"out", "100 INVITE", a}, {"out", "INVITE", b},
		{"in", "180 INVITE", b}, {"out", "180 INVITE", a},
		{"in", "200 INVITE", b}, {"out", "200 INVITE", a},
		{"in", "ACK", a}, {"out", "ACK", b},
		{"in", "BYE", a}, {"out", "BYE", b},
		{"in", "200 BYE", b}, {"out", "200 BYE", a},
	}
}

// callAndHangUp is call, then the caller's BYE answered 200.
func callAndHangUp(t *testing.T, caller, callee *ua) *dlg {
	t.Helper()
	dc, _ := call(t, caller, callee)
	caller.request(dc, "BYE")
	callee.okTo(callee.recv("BYE", isRequest("BYE")))
	caller.recv("200 to BYE", isResponse(200, "BYE"))
	return dc
}

// aliceCallsBob is alice on UDP and bob, on UDP too, registered.
func aliceCallsBob(t *testing.T, p *proxy) (alice, bob *ua) {
	t.Helper()
	alice, bob = newUA(t, "alice", "127.0.0.2", p, ""), newUA(t, "bob", "127.0.0.3", p, "")
	if res := bob.register(600); res.StatusCode != 200 {
		t.Fatalf("bob REGISTER: %d", res.StatusCode)
	}
	return alice, bob
}

// TestTraceCallLadder: a call over UDP and one over TCP (connections the
// UAs opened), each read back from the API as the proxy's ladder of it:
// every message in and out, in order, with the peer it came from or went
// to, the proxy's own socket and the transport. The API asks for the token.
func TestTraceCallLadder(t *testing.T) {
	p := startProxyToken(t, freePort(t), "", "", "trace-token")
	local := fmt.Sprintf("127.0.0.1:%d", p.port)
	alice, bob := aliceCallsBob(t, p)
	carol := newTCPUA(t, "carol", "127.0.0.4", p, "10.1.2.4")
	dave := newTCPUA(t, "dave", "127.0.0.5", p, "10.1.2.5")
	if res := carol.register(600); res.StatusCode != 200 {
		t.Fatalf("carol REGISTER over TCP: %d", res.StatusCode)
	}
	for _, c := range []struct {
		transport      string
		caller, callee *ua
	}{{"udp", alice, bob}, {"tcp", dave, carol}} {
		t.Run(c.transport, func(t *testing.T) {
			dc := callAndHangUp(t, c.caller, c.callee)
			var es []traceEntry
			missing := lastSeen("no trace")
			eventually(t, 5*time.Second, func() bool {
				var code int
				es, code = p.traceOf(dc.callID)
				missing = lastSeen(fmt.Sprintf("GET trace: %d", code))
				if code == 200 {
					missing = lastSeen(missingStep(es, callLadder(c.caller, c.callee)))
				}
				return missing == ""
			}, "%s call's trace: %s", c.transport, &missing)
			for i, e := range es {
				if e.Transport != c.transport || e.Local != local || e.Size != len(e.Message) {
					t.Errorf("entry %v: transport %s, local %s, size %d of %d; want %s, %s, whole", e, e.Transport, e.Local, e.Size, len(e.Message), c.transport, local)
				}
				if i > 0 && (e.Seq <= es[i-1].Seq || e.Time.Before(es[i-1].Time)) {
					t.Errorf("entry %v out of order after %v", e, es[i-1])
				}
				if e.Dir == "out" && e.what() == "INVITE" && !strings.Contains(e.Message, "Via: SIP/2.0/"+strings.ToUpper(c.transport)+" 127.0.0.1:") {
					t.Errorf("the INVITE sent on is not the proxy's (no Via of its own):\n%s", e.Message)
				}
			}
			resp, err := http.Get(p.api + "/api/v1/sessions/" + url.PathEscape(dc.callID) + "/trace")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("trace without the token: %d, want 401", resp.StatusCode)
			}
		})
	}
}

// TestTraceKeepsFirstAndLatest: with [trace] messages = 16, a call of
// more messages keeps its first 8 (the INVITE's) and its last 8 (the
// last INFO's and the BYE's), numbered so the gap shows.
func TestTraceKeepsFirstAndLatest(t *testing.T) {
	p := startProxy(t, "[trace]\nmessages = 16\n")
	alice, bob := aliceCallsBob(t, p)
	dc, _ := call(t, alice, bob)
	for range 5 { // 4 messages each through the proxy
		alice.request(dc, "INFO")
		bob.okTo(bob.recv("INFO", isRequest("INFO")))
		alice.recv("200 to INFO", isResponse(200, "INFO"))
	}
	alice.request(dc, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))

	var es []traceEntry
	eventually(t, 5*time.Second, func() bool {
		es, _ = p.traceOf(dc.callID)
		return len(es) > 0 && es[len(es)-1].what() == "200 BYE" && es[len(es)-1].Dir == "out"
	}, "the trace does not end with the 200 to the BYE sent to the caller: %v", &es)
	if len(es) != 16 {
		t.Fatalf("%d entries kept, want 16: %v", len(es), es)
	}
	if es[0].Dir != "in" || es[0].what() != "INVITE" {
		t.Errorf("first entry %v, want the INVITE in", es[0])
	}
	for i, e := range es {
		first, last := i < 8 && e.Seq != i+1, i >= 8 && e.Seq != es[15].Seq-(15-i)
		if first || last {
			t.Errorf("entry %d is message #%d: want #1..#8, then the last 8 in a row: %v", i, e.Seq, es)
			break
		}
	}
	if es[8].Seq <= 9 {
		t.Errorf("no gap after the first 8, though %d messages went through: %v", es[15].Seq, es)
	}
	if m := missingStep(es[8:], []step{{"in", "BYE", alice.local.String()}, {"out", "BYE", bob.local.String()}, {"in", "200 BYE", bob.local.String()}}); m != "" {
		t.Error(m)
	}
}

// TestTraceDropsOldestCall: with [trace] calls = 2, a third call pushes
// out the first; the other two stay whole.
func TestTraceDropsOldestCall(t *testing.T) {
	p := startProxy(t, "[trace]\ncalls = 2\n")
	r := newRawPeer(t, "udp", p)
	ids := []string{"first@127.0.0.2", "second@127.0.0.2", "third@127.0.0.2"}
	for i, id := range ids {
		r.send(r.fill(optionsToProxy(p), fmt.Sprintf("drop%d", i), id))
		if res, err := r.next(3 * time.Second); err != nil || !strings.HasPrefix(statusLine(res), "SIP/2.0 200") {
			t.Fatalf("OPTIONS %s: %q %v", id, statusLine(res), err)
		}
	}
	for _, id := range ids[1:] {
		var es []traceEntry
		eventually(t, 5*time.Second, func() bool {
			es, _ = p.traceOf(id)
			return missingStep(es, []step{{"in", "OPTIONS", r.local()}, {"out", "200 OPTIONS", r.local()}}) == ""
		}, "call %s: %v", id, &es)
	}
	if es, code := p.traceOf(ids[0]); code != 404 {
		t.Errorf("the oldest of three calls in a trace of 2: %d %v, want 404", code, es)
	}
}

// TestTraceOff: [trace] calls = 0 captures nothing: a call and an OPTIONS
// go through and have no trace, and the 404 says why there may be none.
func TestTraceOff(t *testing.T) {
	p := startProxy(t, "[trace]\ncalls = 0\n")
	alice, bob := aliceCallsBob(t, p)
	dc := callAndHangUp(t, alice, bob)
	r := newRawPeer(t, "udp", p)
	r.send(r.fill(optionsToProxy(p), "off1", "off@127.0.0.2"))
	if res, err := r.next(3 * time.Second); err != nil || !strings.HasPrefix(statusLine(res), "SIP/2.0 200") {
		t.Fatalf("OPTIONS: %q %v", statusLine(res), err)
	}
	var e map[string]string
	if code := p.apiCall("GET", "/api/v1/sessions/off@127.0.0.2/trace", "", &e); code != 404 || !strings.Contains(e["error"], "[trace] calls = 0") {
		t.Errorf("GET trace with capture off: %d %v, want 404 naming [trace] calls = 0", code, e)
	}
	never(t, 300*time.Millisecond, func() bool {
		_, c1 := p.traceOf(dc.callID)
		_, c2 := p.traceOf("off@127.0.0.2")
		return c1 != 404 || c2 != 404
	}, "a trace was kept with [trace] calls = 0")
}

// TestTraceStatelessAnswers: a malformed request with a Call-ID, answered
// 400 from the read filter (UDP) or over its connection (TCP) without a
// transaction, is in its call's trace with that answer; so is one whose
// end cannot be known over TCP, answered before the connection closes.
func TestTraceStatelessAnswers(t *testing.T) {
	p := startProxy(t, "")
	bad := map[string]badRequest{}
	for _, bc := range badRequests {
		bad[bc.name] = bc
	}
	for _, c := range []struct{ transport, name, status string }{
		{"udp", "CSeq not a number", "SIP/2.0 400 Bad CSeq"},
		{"tcp", "CSeq not a number", "SIP/2.0 400 Bad CSeq"},
		{"tcp", "Content-Length a word", "SIP/2.0 400 Bad Content-Length"},
	} {
		t.Run(c.transport+"/"+c.name, func(t *testing.T) {
			r := newRawPeer(t, c.transport, p)
			id := fmt.Sprintf("sl-%s-%d@127.0.0.2", c.transport, len(c.name))
			sent := r.fill(bad[c.name].text, "sl"+c.transport, id)
			r.send(sent)
			if res, err := r.next(3 * time.Second); err != nil || !strings.HasPrefix(statusLine(res), c.status) {
				t.Fatalf("answer %q %v, want %s", statusLine(res), err, c.status)
			}
			var es []traceEntry
			eventually(t, 5*time.Second, func() bool {
				es, _ = p.traceOf(id)
				return len(es) == 2
			}, "trace %v, want the request and its answer", &es)
			in, out := es[0], es[1]
			if in.Dir != "in" || in.Message != string(sent) || in.Remote != r.local() || in.Transport != c.transport {
				t.Errorf("first entry %v, want the request as sent from %s:\n%s", in, r.local(), in.Message)
			}
			if out.Dir != "out" || !strings.HasPrefix(statusLine(out.Message), c.status) || out.Remote != r.local() {
				t.Errorf("second entry %v, want %s to %s", out, c.status, r.local())
			}
		})
	}
}
