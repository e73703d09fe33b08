package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
)

// rtpPeer is a UA's media socket.
type rtpPeer struct {
	t    *testing.T
	conn *net.UDPConn
	seq  uint16
}

func newRTP(t *testing.T, ip string) *rtpPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rtpPeer{t: t, conn: c, seq: 1000}
}

func (r *rtpPeer) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

// sendTo sends one 20 ms PCMU packet carrying marker byte m.
func (r *rtpPeer) sendTo(dst netip.AddrPort, m byte) {
	r.t.Helper()
	r.seq++
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: r.seq, Timestamp: uint32(r.seq) * 160, SSRC: uint32(r.port())}, Payload: make([]byte, 160)}
	p.Payload[0] = m
	b, _ := p.Marshal()
	if _, err := r.conn.WriteToUDPAddrPort(b, dst); err != nil {
		r.t.Fatal(err)
	}
}

// scan reads RTP packets for up to d and hands each to fn with its source
// until fn returns true; it reports the source of that packet, or false
// when d passed first.
func (r *rtpPeer) scan(d time.Duration, fn func(p *rtp.Packet, src netip.AddrPort) bool) (netip.AddrPort, bool) {
	buf := make([]byte, 2048)
	deadline := time.Now().Add(d)
	for {
		_ = r.conn.SetReadDeadline(deadline)
		n, src, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return netip.AddrPort{}, false
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) == nil && fn(&p, src) {
			return src, true
		}
	}
}

// marked matches packets whose payload starts with m.
func marked(m byte) func(*rtp.Packet, netip.AddrPort) bool {
	return func(p *rtp.Packet, _ netip.AddrPort) bool { return len(p.Payload) > 0 && p.Payload[0] == m }
}

// recv waits for a packet carrying marker m and returns its source.
func (r *rtpPeer) recv(m byte) netip.AddrPort {
	r.t.Helper()
	src, ok := r.scan(3*time.Second, marked(m))
	if !ok {
		r.t.Fatalf("no RTP with marker %q within 3s", m)
	}
	return src
}

// within reports whether a packet carrying marker m arrives within d.
func (r *rtpPeer) within(m byte, d time.Duration) bool {
	_, ok := r.scan(d, marked(m))
	return ok
}

// none asserts that no packet with marker m arrives within d.
func (r *rtpPeer) none(m byte, d time.Duration) {
	r.t.Helper()
	if r.within(m, d) {
		r.t.Fatalf("RTP with marker %q arrived", m)
	}
}

// sdpWith is an SDP offer/answer naming a private address (the UA is
// behind NAT) and the UA's real media port.
func sdpWith(port int, extra string) string {
	return fmt.Sprintf("v=0\no=- 1 1 IN IP4 192.168.1.50\ns=-\nc=IN IP4 192.168.1.50\nt=0 0\nm=audio %d RTP/AVP 0\na=rtpmap:0 PCMU/8000\n%s", port, extra)
}

// mediaOf reads the address and port an SDP body sends media to.
func mediaOf(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	var host string
	var port int
	for _, l := range strings.Split(string(body), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "c=IN IP4 ") {
			host = strings.TrimPrefix(l, "c=IN IP4 ")
		}
		if strings.HasPrefix(l, "m=audio ") {
			fmt.Sscanf(l, "m=audio %d", &port)
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil || port == 0 {
		t.Fatalf("no media address in SDP:\n%s", body)
	}
	return netip.AddrPortFrom(a, uint16(port))
}

// inviteSDP sends an INVITE with body (or none) and returns the dialog.
func (u *ua) inviteSDP(uri, body string) *dlg {
	u.t.Helper()
	d := &dlg{callID: "call-" + randTag(), localTag: randTag(), cseq: 1,
		local: fmt.Sprintf("sip:%s@example.test", u.name), peer: uri}
	br := randTag()
	u.lastInviteBranch = "z9hG4bK" + br
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\n"
	}
	u.send(fmt.Sprintf("INVITE %[1]s SIP/2.0\n%[2]s\nMax-Forwards: 70\nFrom: <%[3]s>;tag=%[4]s\nTo: <%[1]s>\nCall-ID: %[5]s\nCSeq: 1 INVITE\n%[6]s\n%[7]s\n%[8]s",
		uri, u.via(br), d.local, d.localTag, d.callID, u.contactHdr(), ct, body))
	return d
}

// answerSDP answers an INVITE 200 with body.
func (u *ua) answerSDP(inv *sip.Request, toTag, body string) *dlg {
	u.t.Helper()
	u.respondTagged(inv, 200, "OK", toTag, body)
	return calleeDialog(inv, toTag)
}

// calleeDialog is the callee's side of the dialog an INVITE sets up.
func calleeDialog(inv *sip.Request, toTag string) *dlg {
	d := &dlg{callID: string(*inv.CallID()), localTag: toTag, cseq: 100,
		local: inv.To().Address.String(), peer: inv.From().Address.String()}
	d.remote, _ = inv.From().Params.Get("tag")
	d.target = inv.Contact().Address.String()
	for _, h := range inv.GetHeaders("Record-Route") {
		d.routes = append(d.routes, h.Value())
	}
	return d
}

// sessions reads the number of relay sessions from the log-free source of
// truth: the media ports the proxy still holds.
func relayPortsOpen(t *testing.T, ports ...netip.AddrPort) int {
	t.Helper()
	open := 0
	for _, p := range ports {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(p))
		if err != nil {
			open++
			continue
		}
		c.Close()
	}
	return open
}

// waitPortsClosed waits until both relay ports of the call are released.
func (c *anchoredCall) waitPortsClosed(t *testing.T, what string) {
	t.Helper()
	eventually(t, 3*time.Second, func() bool { return relayPortsOpen(t, c.toAlice, c.toBob) == 0 }, "relay ports still bound %s", what)
}

// anchoredCall sets up a call whose media is relayed: alice at 127.0.0.2,
// bob at 127.0.0.3, both writing 192.168.1.50 in SDP.
type anchoredCall struct {
	alice, bob       *ua
	aRTP, bRTP       *rtpPeer
	dc, dd           *dlg
	toBob, toAlice   netip.AddrPort // relay addresses each side was given
	invite, answered *sip.Request
}

func setupAnchoredCall(t *testing.T, p *proxy) *anchoredCall {
	t.Helper()
	c := inviteAnchored(t, p)
	c.dd = c.bob.answerSDP(c.invite, "bobtag", sdpWith(c.bRTP.port(), ""))
	ok := c.alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	c.toAlice = mediaOf(t, ok.Body())
	c.dc.confirmed(ok)
	c.alice.request(c.dc, "ACK")
	c.bob.recv("ACK", isRequest("ACK"))
	return c
}

// inviteAnchored starts an anchored call: bob registers, alice's INVITE
// reaches him (c.invite, with the relay port he is given, c.toBob).
func inviteAnchored(t *testing.T, p *proxy) *anchoredCall {
	t.Helper()
	c := &anchoredCall{alice: newUA(t, "alice", "127.0.0.2", p, "192.168.1.60"), bob: newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")}
	c.aRTP, c.bRTP = newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	c.bob.register(600)
	c.dc = c.alice.inviteSDP("sip:bob@example.test", sdpWith(c.aRTP.port(), ""))
	c.invite = c.bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	c.toBob = mediaOf(t, c.invite.Body())
	return c
}

// twoWay checks media both ways: each side sends first once, as UAs
// behind NAT do, and then the other side's packets reach it.
func (c *anchoredCall) twoWay(t *testing.T, mark byte) {
	t.Helper()
	c.aRTP.sendTo(c.toAlice, mark)
	c.bRTP.sendTo(c.toBob, mark+1)
	if src := c.aRTP.recv(mark + 1); src != c.toAlice {
		t.Errorf("caller got media from %s, want the relay port it was given %s", src, c.toAlice)
	}
	c.aRTP.sendTo(c.toAlice, mark+2)
	if src := c.bRTP.recv(mark + 2); src != c.toBob {
		t.Errorf("callee got media from %s, want %s", src, c.toBob)
	}
}

func TestMediaAnchoredBothWays(t *testing.T) {
	p := startProxy(t, "")
	c := setupAnchoredCall(t, p)
	relay := netip.MustParseAddr("127.0.0.1")
	if c.toBob.Addr() != relay || c.toAlice.Addr() != relay {
		t.Fatalf("SDP addresses %s / %s: each side must see only sipanchor", c.toBob, c.toAlice)
	}
	if c.toBob.Port() == uint16(c.aRTP.port()) || c.toAlice.Port() == uint16(c.bRTP.port()) {
		t.Fatal("SDP ports were not rewritten")
	}
	if strings.Contains(string(c.invite.Body()), "192.168.1.50") && strings.Contains(string(c.invite.Body()), "c=IN IP4 192.168.1.50") {
		t.Errorf("caller's private address leaked to the callee:\n%s", c.invite.Body())
	}
	c.twoWay(t, 'a')
	// Packets arrive intact: every byte, header and payload.
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 4242, Timestamp: 99, SSRC: 7, Marker: true}, Payload: []byte("\x01intact payload\xff\x00")}
	raw, _ := pkt.Marshal()
	if _, err := c.aRTP.conn.WriteToUDPAddrPort(raw, c.toAlice); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = c.bRTP.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := c.bRTP.conn.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != string(raw) {
		t.Errorf("relayed packet %x (%v), sent %x", buf[:n], err, raw)
	}

	// A stranger sending to a latched port cannot steal the stream.
	stranger := newRTP(t, "127.0.0.9")
	for range 5 {
		stranger.sendTo(c.toAlice, 'X')
	}
	c.bRTP.none('X', 300*time.Millisecond)
	c.twoWay(t, 'k')

	// BYE frees the session: its ports stop forwarding and are released.
	c.alice.request(c.dc, "BYE")
	c.bob.okTo(c.bob.recv("BYE", isRequest("BYE")))
	c.alice.recv("200 to BYE", isResponse(200, "BYE"))
	p.waitIdle("after BYE")
	c.waitPortsClosed(t, "after BYE")
	c.aRTP.sendTo(c.toAlice, 'z')
	c.bRTP.none('z', 300*time.Millisecond)
}

func TestMediaReleasedOnRejectAndCancel(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	bob.register(600)
	aRTP := newRTP(t, "127.0.0.2")

	// 486: the branch's session goes.
	alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	toBob := mediaOf(t, inv.Body())
	if relayPortsOpen(t, toBob) != 1 {
		t.Fatal("no relay port held while ringing")
	}
	bob.answer(inv, 486, "Busy Here", "b1")
	bob.recv("ACK", isRequest("ACK"))
	alice.recv("486", isResponse(486, "INVITE"))
	p.waitIdle("after 486")
	eventually(t, 3*time.Second, func() bool { return relayPortsOpen(t, toBob) == 0 }, "relay port still bound after 486")

	// CANCEL: likewise.
	dc := alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
	inv = bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	toBob = mediaOf(t, inv.Body())
	bob.answer(inv, 180, "Ringing", "b2")
	alice.recv("180", isResponse(180, "INVITE"))
	alice.send(fmt.Sprintf("CANCEL sip:bob@example.test SIP/2.0\n%s\nMax-Forwards: 70\nFrom: <%s>;tag=%s\nTo: <sip:bob@example.test>\nCall-ID: %s\nCSeq: 1 CANCEL\n\n",
		alice.via(strings.TrimPrefix(alice.lastInviteBranch, "z9hG4bK")), dc.local, dc.localTag, dc.callID))
	bob.okTo(bob.recv("CANCEL", isRequest("CANCEL")))
	bob.answer(inv, 487, "Request Terminated", "b2")
	alice.recv("487", isResponse(487, "INVITE"))
	p.waitIdle("after CANCEL")
	eventually(t, 3*time.Second, func() bool { return relayPortsOpen(t, toBob) == 0 }, "relay port still bound after CANCEL")
}

func TestMediaForkKeepsOnlyAnsweredBranch(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	desk, mobile := twoContacts(t, p)
	aRTP := newRTP(t, "127.0.0.2")
	dc := alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
	inv1 := desk.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	inv2 := mobile.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	p1, p2 := mediaOf(t, inv1.Body()), mediaOf(t, inv2.Body())
	if p1 == p2 {
		t.Fatalf("both branches got relay port %s: want one session per branch", p1)
	}
	mobile.answer(inv2, 180, "Ringing", "m")
	deskRTP := newRTP(t, "127.0.0.5")
	desk.answerSDP(inv1, "d", sdpWith(deskRTP.port(), ""))
	ok := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	mobile.okTo(mobile.recv("CANCEL", isRequest("CANCEL")))
	mobile.answer(inv2, 487, "Request Terminated", "m")
	dc.confirmed(ok)
	alice.request(dc, "ACK")
	eventually(t, 3*time.Second, func() bool { return relayPortsOpen(t, p2) == 0 }, "the cancelled branch still holds its relay port")
	if relayPortsOpen(t, p1) != 1 {
		t.Error("the answered branch lost its relay port")
	}
	toAlice := mediaOf(t, ok.Body())
	aRTP.sendTo(toAlice, 'a')
	deskRTP.sendTo(p1, 'd')
	aRTP.recv('d')
}

func TestMediaTimeoutSendsBYEToBothEnds(t *testing.T) {
	p := startProxy(t, "[media]\nsetup_timeout = \"1s\"\nsession_timeout = \"1s\"\n")
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	start := time.Now() // the last packet
	// Media stops; within timeout + 1 s both ends get a BYE, and answer it.
	byeA := c.alice.recv("BYE", isRequest("BYE")).(*sip.Request)
	c.alice.okTo(byeA)
	byeB := c.bob.recv("BYE", isRequest("BYE")).(*sip.Request)
	c.bob.okTo(byeB)
	if el := time.Since(start); el > 2*time.Second+200*time.Millisecond {
		t.Errorf("BYEs after %v, want within timeout (1 s) + 1 s", el)
	}
	// Each BYE is in its dialog: tags and Request-URI of the receiving side.
	if tag, _ := byeA.To().Params.Get("tag"); tag != c.dc.localTag {
		t.Errorf("BYE to caller has To tag %q, want %q", tag, c.dc.localTag)
	}
	if tag, _ := byeB.To().Params.Get("tag"); tag != "bobtag" {
		t.Errorf("BYE to callee has To tag %q", tag)
	}
	if byeB.Recipient.Host != "192.168.1.50" || byeA.Recipient.Host != "192.168.1.60" {
		t.Errorf("BYE Request-URIs %s / %s: want each UA's own Contact", byeB.Recipient.String(), byeA.Recipient.String())
	}
	answered := func() int { return len(p.logLines("status=200 reason=\"media timeout\"")) }
	eventually(t, 3*time.Second, func() bool { return answered() >= 2 }, "BYEs not logged as answered")
	if n := answered(); n != 2 {
		t.Errorf("%d BYEs logged as answered, want 2", n)
	}
	c.waitPortsClosed(t, "after the media timeout")
}

func TestMediaPortsExhausted503(t *testing.T) {
	// Two port pairs: one call (a pair for each side of its stream).
	p := startProxy(t, "[media]\nport_min = 31000\nport_max = 31003\n")
	c := setupAnchoredCall(t, p)
	carol := newUA(t, "carol", "127.0.0.4", p, "")
	carol.register(600)
	cRTP := newRTP(t, "127.0.0.5")
	c.alice.inviteSDP("sip:carol@example.test", sdpWith(cRTP.port(), ""))
	res := c.alice.recv("final", isFinal("INVITE")).(*sip.Response)
	if res.StatusCode != 503 {
		t.Fatalf("INVITE with no media ports left: %d %s, want 503", res.StatusCode, res.Reason)
	}
	carol.quiet("INVITE", 200*time.Millisecond, isRequest("INVITE"))
	if len(p.logLines("media ports exhausted")) == 0 {
		t.Error("no log line says the ports ran out")
	}
	// The first call still works, and once it ends the ports are free again.
	c.twoWay(t, 'a')
	c.alice.request(c.dc, "BYE")
	c.bob.okTo(c.bob.recv("BYE", isRequest("BYE")))
	c.alice.recv("200 to BYE", isResponse(200, "BYE"))
	dc := c.alice.inviteSDP("sip:carol@example.test", sdpWith(cRTP.port(), ""))
	inv := carol.recv("INVITE after the ports came back", isRequest("INVITE")).(*sip.Request)
	carol.answerSDP(inv, "c1", sdpWith(cRTP.port(), ""))
	dc.confirmed(c.alice.recv("200", isResponse(200, "INVITE")).(*sip.Response))
}

func TestDialogLifetimeEndsCall(t *testing.T) {
	p := startProxy(t, "[relay]\nlifetime = \"1s\"\n")
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	c.alice.okTo(c.alice.recv("BYE", isRequest("BYE")))
	c.bob.okTo(c.bob.recv("BYE", isRequest("BYE")))
	c.waitPortsClosed(t, "after the lifetime ended the call")
	if len(p.logLines("dialog lifetime reached")) == 0 {
		t.Error("no log line for the lifetime")
	}
}

// health reads GET /api/v1/health.
func (p *proxy) health() map[string]float64 {
	p.t.Helper()
	resp, err := http.Get(p.api + "/api/v1/health")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		p.t.Fatal(err)
	}
	out := map[string]float64{}
	for k, v := range raw {
		if f, ok := v.(float64); ok {
			out[k] = f
		}
	}
	return out
}

// settled waits, up to timeout, until the goroutine and open file counts
// have stayed the same for quiet, and returns the health then.
func (p *proxy) settled(t *testing.T, quiet, timeout time.Duration) map[string]float64 {
	t.Helper()
	h := p.health()
	since := time.Now()
	eventually(t, timeout, func() bool {
		now := p.health()
		if now["goroutines"] != h["goroutines"] || now["open_files"] != h["open_files"] {
			h, since = now, time.Now()
		}
		return time.Since(since) >= quiet
	}, "goroutines and open files never held still for %v: last %v", quiet, &h)
	return h
}

// TestThousandCallsLeaveNothingBehind: after 1,000 sequential anchored
// calls with RTP both ways, no dialog, relay session, port, socket or
// goroutine is left. T1 is shortened so that sipgo's transaction timers
// (64*T1) run out within the test.
func TestThousandCallsLeaveNothingBehind(t *testing.T) {
	p := startProxySIP(t, "t1 = \"40ms\"", "")
	alice := newUA(t, "alice", "127.0.0.2", p, "192.168.1.60")
	bob := newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	bob.register(3600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	// One call first, so that lazily started goroutines exist in the baseline.
	oneCall := func(i int) {
		dc := alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
		inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
		toBob := mediaOf(t, inv.Body())
		bob.answerSDP(inv, fmt.Sprint("b", i), sdpWith(bRTP.port(), ""))
		ok := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
		dc.confirmed(ok)
		alice.request(dc, "ACK")
		bob.recv("ACK", isRequest("ACK"))
		m := byte('a' + i%20)
		aRTP.sendTo(mediaOf(t, ok.Body()), m)
		bRTP.sendTo(toBob, m)
		aRTP.recv(m)
		alice.request(dc, "BYE")
		bob.okTo(bob.recv("BYE", isRequest("BYE")))
		alice.recv("200 to BYE", isResponse(200, "BYE"))
	}
	oneCall(0)
	// The baseline is taken once that call's transactions are gone: they
	// linger for 64*T1 = 2.6 s (T4 = 0.4 s), so wait until the counts have
	// not changed for longer than that.
	before := p.settled(t, 64*40*time.Millisecond+200*time.Millisecond, 15*time.Second)
	for i := 1; i <= 1000; i++ {
		oneCall(i)
	}
	var after map[string]float64
	poll(10*time.Second, func() bool {
		after = p.health()
		return after["goroutines"] <= before["goroutines"]+2 && after["open_files"] <= before["open_files"]
	})
	for _, k := range []string{"dialogs", "relay_sessions", "port_pairs_used"} {
		if after[k] != 0 {
			t.Errorf("%s = %v after all calls ended", k, after[k])
		}
	}
	if after["goroutines"] > before["goroutines"]+2 {
		t.Errorf("goroutines %v → %v: leaked", before["goroutines"], after["goroutines"])
	}
	if after["open_files"] > before["open_files"] {
		t.Errorf("open files %v → %v: sockets leaked", before["open_files"], after["open_files"])
	}
	t.Logf("before %v\nafter %v", before, after)
}

func TestUnknownRelayFlagRefusedAtStart(t *testing.T) {
	requireE2E(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(path, []byte("[sip]\nlisten = [\"udp:127.0.0.1:5999\"]\n\n[relay]\ncaller_flags = \"replace-origin ICE=remove trust-adress\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"serve", "-c", path}, {"config", "check", "-c", path}} {
		var stderr bytes.Buffer
		cmd := exec.Command(binPath, args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
			t.Fatalf("%s: exit %v, want non-zero", args[0], err)
		}
		if want := path + ":5: relay.caller_flags: unknown relay flag \"trust-adress\"\n"; stderr.String() != want {
			t.Errorf("%s: stderr %q\nwant %q", args[0], stderr.String(), want)
		}
	}
}

func TestBridgeFlagsRefusedClearly(t *testing.T) {
	requireE2E(t)
	path := filepath.Join(t.TempDir(), "c.toml")
	_ = os.WriteFile(path, []byte("[relay]\ncallee_flags = \"out-iface=external\"\n"), 0o644)
	out, err := exec.Command(binPath, "config", "check", "-c", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), path+":2: relay.callee_flags: in-iface/out-iface") {
		t.Errorf("out-iface with one media interface: %v %s", err, out)
	}
}

func TestEngageNAT(t *testing.T) {
	p := startProxy(t, "[relay]\nengage = \"nat\"\n")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	// A caller whose Contact and SDP are its real address: not engaged.
	direct := newUA(t, "alice", "127.0.0.2", p, "")
	aRTP := newRTP(t, "127.0.0.2")
	plain := strings.ReplaceAll(sdpWith(aRTP.port(), ""), "192.168.1.50", "127.0.0.2")
	direct.inviteSDP("sip:bob@example.test", plain)
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	if got := mediaOf(t, inv.Body()); got.Port() != uint16(aRTP.port()) {
		t.Errorf("caller not behind NAT was anchored: SDP says %s", got)
	}
	bob.answer(inv, 486, "Busy Here", "x")
	direct.recv("486", isResponse(486, "INVITE"))
	// A caller behind NAT (private Contact and SDP): engaged.
	natted := newUA(t, "carol", "127.0.0.4", p, "192.168.1.70")
	cRTP := newRTP(t, "127.0.0.4")
	natted.inviteSDP("sip:bob@example.test", sdpWith(cRTP.port(), ""))
	inv = bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	if got := mediaOf(t, inv.Body()); got.Addr().String() != "127.0.0.1" || got.Port() == uint16(cRTP.port()) {
		t.Errorf("caller behind NAT not anchored: SDP says %s", got)
	}
}

// TestNGServerInBinary: the binary serves rtpengine's NG protocol on
// [ng] listen, with the same relay the SIP side uses.
func TestNGServerInBinary(t *testing.T) {
	ngPort := freePort(t)
	p := startProxy(t, fmt.Sprintf("[ng]\nlisten = \"127.0.0.1:%d\"\n", ngPort))
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", ngPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(msg string) string {
		t.Helper()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8192)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no NG reply to %q: %v", msg, err)
		}
		return string(buf[:n])
	}
	if r := ask("a1 d7:command4:pinge"); r != "a1 d6:result4:ponge" {
		t.Fatalf("ping: %q", r)
	}
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	r := ask(fmt.Sprintf("a2 d7:command5:offer7:call-id2:n18:from-tag1:f3:sdp%d:%se", len(sdp), sdp))
	if !strings.Contains(r, "6:result2:ok") || !strings.Contains(r, "c=IN IP4 127.0.0.1") {
		t.Fatalf("offer: %q", r)
	}
	if h := p.health(); h["relay_sessions"] != 1 {
		t.Errorf("relay sessions %v after an NG offer, want 1", h["relay_sessions"])
	}
	if r := ask("a3 d7:command6:delete7:call-id2:n18:from-tag1:fe"); !strings.Contains(r, "6:result2:ok") {
		t.Errorf("delete: %q", r)
	}
	if h := p.health(); h["relay_sessions"] != 0 {
		t.Errorf("relay sessions %v after delete", h["relay_sessions"])
	}
}
