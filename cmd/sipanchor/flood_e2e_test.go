package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// flooder is a SIPp sending OPTIONS as fast as told from one address.
type flooder struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan error
	limit time.Duration // SIPp's -timeout
}

// startFlood runs SIPp from ip sending n OPTIONS at rate per second to p,
// in the background; wait collects it.
func startFlood(t *testing.T, p *proxy, ip string, rate, n int) *flooder {
	t.Helper()
	return startSippFlood(t, p, "flood_options.xml", ip, rate, n)
}

// startSippFlood is startFlood with another scenario of testdata/sipp and
// more SIPp arguments.
func startSippFlood(t *testing.T, p *proxy, scenario, ip string, rate, n int, args ...string) *flooder {
	t.Helper()
	scen, _ := filepath.Abs("../../testdata/sipp/" + scenario)
	f := &flooder{out: &syncBuffer{}, done: make(chan error, 1), limit: time.Duration(n/rate+5) * time.Second}
	f.cmd = sippCmd(t, append([]string{"-sf", scen, fmt.Sprintf("127.0.0.1:%d", p.port), "-i", ip, "-p", strconv.Itoa(freePort(t)),
		"-r", strconv.Itoa(rate), "-rp", "1000", "-m", strconv.Itoa(n), "-timeout", fmt.Sprintf("%ds", int(f.limit.Seconds())), "-nostdin"}, args...)...)
	f.cmd.Stdout, f.cmd.Stderr = f.out, f.out
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.done <- f.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-f.done:
		default:
			_ = f.cmd.Process.Kill()
			<-f.done
		}
	})
	return f
}

// wait waits for the flood to be sent; SIPp's exit status is not looked
// at (unanswered OPTIONS are what a flooder expects).
func (f *flooder) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-f.done:
		f.done <- err
	case <-time.After(f.limit + 5*time.Second):
		t.Fatalf("sipp flood did not finish within %v\n%s", f.limit+5*time.Second, tail(f.out.String(), 20))
	}
}

// ban is one entry of GET /api/v1/bans.
type ban struct {
	IP       string    `json:"ip"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Requests int       `json:"requests"`
	Dropped  uint64    `json:"dropped"`
}

// bans reads GET /api/v1/bans.
func (p *proxy) bans() []ban {
	p.t.Helper()
	resp, err := http.Get(p.api + "/api/v1/bans")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		p.t.Fatalf("GET /api/v1/bans: %d %s", resp.StatusCode, b)
	}
	var out []ban
	if err := json.Unmarshal(b, &out); err != nil {
		p.t.Fatalf("GET /api/v1/bans: %v: %s", err, b)
	}
	return out
}

func banned(bs []ban, ip string) bool {
	for _, b := range bs {
		if b.IP == ip {
			return true
		}
	}
	return false
}

// memKB reads a field (VmRSS, VmHWM) of the proxy's /proc status, in KiB.
func (p *proxy) memKB(field string) int {
	p.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				p.t.Fatalf("%s: %q", field, v)
			}
			return n
		}
	}
	p.t.Fatalf("no %s in /proc/%d/status", field, p.cmd.Process.Pid)
	return 0
}

// optionsAnswered sends an OPTIONS to the proxy itself from u and reports whether
// it was answered 200 within wait.
func (u *ua) optionsAnswered(p *proxy, wait time.Duration) bool {
	u.t.Helper()
	cid := "opt-" + randTag()
	u.send(fmt.Sprintf("OPTIONS sip:127.0.0.1:%d SIP/2.0\n%s\nMax-Forwards: 70\nFrom: <sip:%s@example.test>;tag=%s\nTo: <sip:127.0.0.1:%d>\nCall-ID: %s\nCSeq: 1 OPTIONS\n\n",
		p.port, u.via(randTag()), u.name, randTag(), p.port, cid))
	deadline := time.After(wait)
	for {
		select {
		case m := <-u.in:
			if r, ok := m.(*sip.Response); ok && string(*r.CallID()) == cid && r.StatusCode == 200 {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// TestFloodIsBannedCallsGoOn: with the shipped defaults, a SIPp flood of
// 5,000 OPTIONS a second for 10 s from 127.0.0.9 gets that address banned
// (logged once) while SIPp places 100 calls from other addresses through
// it, every one of which completes. sipanchor's memory stays bounded, and afterwards no
// dialog, session or port is left and goroutines and files are back near
// where they were. `ctl bans` lists the flooder; `ctl unban` lifts the
// ban and its next request is answered.
func TestFloodIsBannedCallsGoOn(t *testing.T) {
	p := startProxy(t, "[limits]\n") // the defaults
	base := p.health()
	baseRSS := p.memKB("VmRSS")

	// 5,000 requests a second for 10 s: 10× the 500 calls a
	// second one core sustains (README, make bench).
	flood := startFlood(t, p, "127.0.0.9", 5000, 50000)
	eventually(t, 5*time.Second, func() bool { return banned(p.bans(), "127.0.0.9") },
		"the flooder 127.0.0.9 was never banned; bans: %v", p.bans())
	// Legitimate calls all through the flood: 100 at 10 a second, of
	// which at least 99 complete.
	sippCallsAtLeast(t, p, "legit", 100, 99, nil, "uac.xml", []string{"-r", "10", "-d", "200"})
	flood.wait(t)
	if !strings.Contains(flood.out.String(), "50000") {
		t.Errorf("the flooder did not send its 50,000 requests:\n%s", tail(flood.out.String(), 30))
	}

	if got := p.logLines("source banned"); len(got) != 1 || !strings.Contains(got[0], "127.0.0.9") {
		t.Errorf("ban log lines = %q, want exactly one naming 127.0.0.9", got)
	}
	bs := p.bans()
	if len(bs) != 1 || bs[0].IP != "127.0.0.9" || bs[0].Requests <= 0 || bs[0].Dropped < 1000 || !bs[0].Until.After(bs[0].Since) {
		t.Errorf("bans = %+v, want 127.0.0.9 alone, with what it sent and the thousands dropped", bs)
	}
	peak := p.memKB("VmHWM")
	t.Logf("RSS baseline %d KiB, peak %d KiB; bans %+v", baseRSS, peak, bs)
	if peak > 2*baseRSS+50*1024 {
		t.Errorf("peak RSS %d KiB under the flood, baseline %d KiB: not bounded", peak, baseRSS)
	}
	p.waitIdle("after the flood")
	p.backTo(t, base, 30, 10)

	out, err := p.ctl("bans")
	if err != nil || !strings.Contains(out, "127.0.0.9") {
		t.Errorf("ctl bans: %v\n%s", err, out)
	}
	m := p.metricsText()
	if !strings.Contains(m, `sipanchor_sip_dropped_total{reason="banned"}`) {
		t.Errorf("no banned drops in /metrics:\n%s", m)
	}

	stranger := newUA(t, "flooder", "127.0.0.9", p, "")
	if stranger.optionsAnswered(p, 300*time.Millisecond) {
		t.Fatal("a banned source's OPTIONS was answered")
	}
	if out, err := p.ctl("unban", "127.0.0.9"); err != nil {
		t.Fatalf("ctl unban: %v\n%s", err, out)
	}
	if bs := p.bans(); banned(bs, "127.0.0.9") {
		t.Errorf("still banned after unban: %+v", bs)
	}
	if !stranger.optionsAnswered(p, 3*time.Second) {
		t.Error("the unbanned source's OPTIONS was not answered")
	}
	if got := p.logLines("source unbanned"); len(got) != 1 || !strings.Contains(got[0], "127.0.0.9") {
		t.Errorf("unban log lines = %q, want one naming 127.0.0.9", got)
	}
}

// metricsText reads /metrics.
func (p *proxy) metricsText() string {
	p.t.Helper()
	resp, err := http.Get(p.api + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestTrustedPeerIsNotBanned: a [[peer]] network sending at the flooder's
// rate is not banned; its requests keep being answered.
func TestTrustedPeerIsNotBanned(t *testing.T) {
	p := startProxy(t, "[limits]\n"+officePeer) // 127.0.0.2 trusted
	flood := startFlood(t, p, "127.0.0.2", 2000, 4000)
	flood.wait(t)
	var m string
	eventually(t, 5*time.Second, func() bool {
		m = p.metricsText()
		return requestsCounted(m, "OPTIONS") > 1000
	}, "the peer's flood was not received: /metrics:\n%v", &m)
	if bs := p.bans(); len(bs) != 0 {
		t.Errorf("bans = %+v, want none", bs)
	}
	if got := p.logLines("source banned"); len(got) != 0 {
		t.Errorf("ban logged: %q", got)
	}
	office := newUA(t, "office", "127.0.0.2", p, "")
	if !office.optionsAnswered(p, 3*time.Second) {
		t.Error("the trusted peer's OPTIONS was not answered after its burst")
	}
}

// requestsCounted reads sipanchor_sip_requests_total for a method.
func requestsCounted(metrics, method string) int {
	return max(int(series(metrics, `sipanchor_sip_requests_total{method="`+method+`"}`)), 0)
}

// series is the value of one labelled series in a /metrics text, or -1.
func series(metrics, name string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// inviteFinal sends an INVITE from u to uri and returns its final response.
func inviteFinal(t *testing.T, u *ua, uri string) *sip.Response {
	t.Helper()
	d := u.invite(uri)
	return u.recv("final response to "+d.callID, func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode >= 200 && string(*r.CallID()) == d.callID
	}).(*sip.Response)
}

// want503 checks a limit's answer: 503 with Retry-After.
func want503(t *testing.T, what string, r *sip.Response, retry string) {
	t.Helper()
	if r.StatusCode != 503 {
		t.Fatalf("%s: %d %s, want 503", what, r.StatusCode, r.Reason)
	}
	if h := r.GetHeader("Retry-After"); h == nil || h.Value() != retry {
		t.Errorf("%s: Retry-After %v, want %s", what, h, retry)
	}
}

// TestCallLimitsAnswer503: beyond max_calls_per_source and max_calls a new
// call is answered 503 with Retry-After (never dropped), and a call ending
// makes room again.
func TestCallLimitsAnswer503(t *testing.T) {
	p := startProxy(t, "[limits]\nmax_calls = 2\nmax_calls_per_source = 1\nretry_after = \"7s\"\n")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	carol := newUA(t, "carol", "127.0.0.4", p, "")
	bob.register(600)

	dc, _ := call(t, alice, bob)
	want503(t, "alice's second call (per source)", inviteFinal(t, alice, "sip:bob@example.test"), "7")
	call(t, carol, bob)
	dave := newUA(t, "dave", "127.0.0.5", p, "")
	want503(t, "a third call (max_calls)", inviteFinal(t, dave, "sip:bob@example.test"), "7")

	alice.request(dc, "BYE")
	bob.recv("BYE", isRequest("BYE"))
	eventually(t, 3*time.Second, func() bool { return p.health()["dialogs"] == 1 }, "alice's call did not end")
	// Room again: dave's call is put through (bob does not answer it here).
	dave.invite("sip:bob@example.test")
	bob.recv("dave's INVITE", isRequest("INVITE"))
}

// TestCPSLimitAnswers503: beyond max_cps new INVITEs are answered 503
// with Retry-After.
func TestCPSLimitAnswers503(t *testing.T) {
	p := startProxy(t, "[limits]\nmax_cps = 2\n")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	var codes []int
	for range 5 {
		r := inviteFinal(t, alice, "sip:nobody@example.test")
		codes = append(codes, r.StatusCode)
		if r.StatusCode == 503 {
			want503(t, "over max_cps", r, "1")
			return
		}
	}
	t.Fatalf("5 INVITEs in a row with max_cps = 2: %v, want a 503", codes)
}

// closedWithin reports whether u's connection is closed by the proxy
// within d, and how many responses came before.
func (u *ua) closedWithin(d time.Duration) (bool, int) {
	n := 0
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-u.in:
			if !ok {
				return true, n
			}
			if _, ok := m.(*sip.Response); ok {
				n++
			}
		case <-deadline:
			return false, n
		}
	}
}

// TestTCPFlooderIsBanned: over TCP the request past max_requests closes
// the flooder's connection, and a new connection from it is closed at once.
func TestTCPFlooderIsBanned(t *testing.T) {
	p := startProxy(t, "[limits]\nmax_requests = 5\n")
	u := newTCPUA(t, "tcpflood", "127.0.0.10", p, "127.0.0.10")
	for i := range 20 {
		msg := fmt.Sprintf("OPTIONS sip:nobody@example.test SIP/2.0\n%s\nMax-Forwards: 70\nFrom: <sip:f@example.test>;tag=%d\nTo: <sip:nobody@example.test>\nCall-ID: tcpflood-%d\nCSeq: 1 OPTIONS\n\n",
			u.via(randTag()), i, i)
		if _, err := u.tc.Write([]byte(crlf(msg))); err != nil {
			break // the ban closed the connection before the flood was all written
		}
	}
	closed, answered := u.closedWithin(5 * time.Second)
	if !closed || answered > 5 {
		t.Fatalf("flooder's connection closed %v after %d answers; want closed, at most 5 answered", closed, answered)
	}
	if !banned(p.bans(), "127.0.0.10") {
		t.Fatalf("127.0.0.10 not banned: %+v", p.bans())
	}
	again := newTCPUA(t, "tcpflood2", "127.0.0.10", p, "127.0.0.10")
	if closed, n := again.closedWithin(3 * time.Second); !closed || n != 0 {
		t.Errorf("a banned source's new connection: closed %v, %d answers; want closed at once", closed, n)
	}
}

// TestPeerAndUserCallLimits: a trusted peer over its [[peer]] max_calls
// gets 503 with Retry-After; a user (From user@domain) over
// max_calls_per_user gets 486, from whatever address it calls.
func TestPeerAndUserCallLimits(t *testing.T) {
	p := startProxy(t, "[limits]\nmax_calls_per_user = 1\nretry_after = \"9s\"\n\n[[peer]]\nname = \"pbx\"\nnetworks = [\"127.0.0.8/32\"]\nmax_calls = 1\n")
	pbx := newUA(t, "pbx", "127.0.0.8", p, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	alice2 := newUA(t, "alice", "127.0.0.4", p, "") // the same user on another phone
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)

	dp, _ := call(t, pbx, bob)
	want503(t, "the peer's second call (its max_calls)", inviteFinal(t, pbx, "sip:bob@example.test"), "9")
	call(t, alice, bob)
	if res := inviteFinal(t, alice2, "sip:bob@example.test"); res.StatusCode != 486 {
		t.Errorf("alice's second call (max_calls_per_user): %d %s, want 486", res.StatusCode, res.Reason)
	}
	pbx.request(dp, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	eventually(t, 3*time.Second, func() bool { return p.health()["dialogs"] == 1 }, "the peer's call did not end")
	pbx.invite("sip:bob@example.test")
	bob.recv("the peer's INVITE once it is under its limit", isRequest("INVITE"))
}

// TestSpoofedFromUsesNoOnesQuota: with auth on, a caller who did not
// authenticate is nobody's user: a stranger writing a partner's From
// (alice@partner.test) on its calls does not use up that user's
// max_calls_per_user, so alice's own call through the trusted PBX is
// still put through (not 486). The stranger stays bounded per source.
func TestSpoofedFromUsesNoOnesQuota(t *testing.T) {
	p := startProxy(t, "[registrar]\nauth = true\n\n[limits]\nmax_calls_per_user = 1\n\n[[peer]]\nname = \"pbx\"\nnetworks = [\"127.0.0.8/32\"]\n")
	if out, err := exec.Command(binPath, "ctl", "user", "add", "bob@example.test", "pw", "-c", p.cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("ctl user add: %v\n%s", err, out)
	}
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	if res := bob.registerAuth("bob", "bob", "pw"); res.StatusCode != 200 {
		t.Fatalf("bob's REGISTER: %d", res.StatusCode)
	}
	stranger := newUA(t, "stranger", "127.0.0.9", p, "")
	pbx := newUA(t, "pbx", "127.0.0.8", p, "")

	stranger.inviteAs("sip:bob@example.test", "sip:alice@partner.test", "")
	inv := bob.recv("the stranger's call to a local user", isRequest("INVITE")).(*sip.Request)
	bob.answer(inv, 180, "Ringing", "b1")
	pbx.inviteAs("sip:bob@example.test", "sip:alice@partner.test", "")
	bob.recv("alice's call through the PBX", isRequest("INVITE"))
}
