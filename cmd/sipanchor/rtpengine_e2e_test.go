package main

import (
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// rtpengineDaemon is Debian's rtpengine (package rtpengine-daemon) in
// userspace mode on test ports.
type rtpengineDaemon struct {
	ngPort           int
	portMin, portMax int
	cmd              *exec.Cmd
	out              *syncBuffer
}

// startRtpengine runs rtpengine with its media ports in portMin..portMin+199.
// The test fails, never skips, without it: .ci/run installs it.
func startRtpengine(t *testing.T, portMin int, extra ...string) *rtpengineDaemon {
	t.Helper()
	requireE2E(t)
	bin, err := exec.LookPath("rtpengine")
	if err != nil {
		t.Fatal("rtpengine not found: install Debian's rtpengine-daemon (bash .ci/run does)")
	}
	d := &rtpengineDaemon{ngPort: freePort(t), portMin: portMin, portMax: portMin + 199, out: &syncBuffer{}}
	d.cmd = exec.Command(bin, "--foreground", "--log-stderr", "--table=-1", "--interface=127.0.0.1",
		fmt.Sprintf("--listen-ng=127.0.0.1:%d", d.ngPort), fmt.Sprintf("--port-min=%d", d.portMin),
		fmt.Sprintf("--port-max=%d", d.portMax), "--config-file=none", "--log-level=5",
		"--delete-delay=0") // by default rtpengine keeps deleted calls 30 s
	d.cmd.Args = append(d.cmd.Args, extra...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("rtpengine on %d:\n%s", d.ngPort, tail(d.out.String(), 40))
		}
	})
	// Ready when it answers a ping.
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", d.ngPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	eventually(t, 10*time.Second, func() bool {
		c.Write([]byte("p d7:command4:pinge"))
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Read(buf) // fails at once (ICMP) while nothing is bound
		return err == nil && strings.Contains(string(buf[:n]), "pong")
	}, "rtpengine did not answer an NG ping:\n%s", d.out)
	return d
}

func (d *rtpengineDaemon) kill() {
	if d.cmd.Process != nil {
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		_ = d.cmd.Wait()
		d.cmd.Process = nil
	}
}

func (d *rtpengineDaemon) owns(port uint16) bool {
	return int(port) >= d.portMin && int(port) <= d.portMax
}

// rtpengineConfig is [relay] for engine = "rtpengine" over nodes.
func rtpengineConfig(nodes ...string) string {
	q := make([]string, len(nodes))
	for i, n := range nodes {
		q[i] = fmt.Sprintf("%q", n)
	}
	return fmt.Sprintf("[relay]\nengine = \"rtpengine\"\nrtpengine_tout = \"300ms\"\nrtpengine_retr = 1\ndisable_timeout = \"60s\"\ntimer_interval = \"500ms\"\npoll_interval = \"500ms\"\n\n[[relay.set]]\nid = 0\nnodes = [%s]\n", strings.Join(q, ", "))
}

// rtpCall sets up one call whose UAs write their real loopback addresses
// in SDP, and returns the relay addresses each side was given.
func rtpCall(t *testing.T, alice, bob *ua, aRTP, bRTP *rtpPeer, tag string) (*dlg, *dlg, string, string) {
	t.Helper()
	plain := func(ip string, port int) string { return strings.ReplaceAll(sdpWith(port, ""), "192.168.1.50", ip) }
	dc := alice.inviteSDP("sip:bob@example.test", plain("127.0.0.2", aRTP.port()))
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	dd := bob.answerSDP(inv, tag, plain("127.0.0.3", bRTP.port()))
	ok := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	dc.confirmed(ok)
	alice.request(dc, "ACK")
	bob.recv("ACK", isRequest("ACK"))
	return dc, dd, string(inv.Body()), string(ok.Body())
}

func TestCallRelayedByRtpengine(t *testing.T) {
	rte := startRtpengine(t, 44200)
	p := startProxy(t, rtpengineConfig(fmt.Sprintf("udp:127.0.0.1:%d=1", rte.ngPort)))
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	dc, _, atBob, atAlice := rtpCall(t, alice, bob, aRTP, bRTP, "b1")
	toBob, toAlice := mediaOf(t, []byte(atBob)), mediaOf(t, []byte(atAlice))
	if !rte.owns(toBob.Port()) || !rte.owns(toAlice.Port()) {
		t.Fatalf("media ports %d/%d are not rtpengine's %d..%d", toBob.Port(), toAlice.Port(), rte.portMin, rte.portMax)
	}
	aRTP.sendTo(toAlice, 'a')
	bRTP.sendTo(toBob, 'b')
	aRTP.recv('b')
	aRTP.sendTo(toAlice, 'c')
	bRTP.recv('c')
	if h := p.health(); h["relay_sessions"] != 1 || h["port_pairs_used"] != 0 {
		t.Errorf("health: %v relay sessions (want rtpengine's one call), port_pairs_used %v (want none: builtin's)", h["relay_sessions"], h["port_pairs_used"])
	}
	out, err := p.ctl("relays")
	if err != nil || !strings.Contains(out, fmt.Sprintf("udp:127.0.0.1:%d", rte.ngPort)) {
		t.Errorf("ctl relays: %v\n%s", err, out)
	}

	alice.request(dc, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))
	// The call is gone from rtpengine.
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", rte.ngPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	var reply string
	i := 0
	if !poll(3*time.Second, func() bool {
		i++ // a new cookie each time: rtpengine replays the reply to a repeated one
		fmt.Fprintf(c, "q%d d7:command5:query7:call-id%d:%se", i, len(dc.callID), dc.callID)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := c.Read(buf)
		reply = string(buf[:n])
		return strings.Contains(reply, "Unknown call-id")
	}) {
		t.Errorf("rtpengine still has the call after BYE: %q", reply)
	}
}

func TestRtpengineFailover(t *testing.T) {
	a, b := startRtpengine(t, 44400), startRtpengine(t, 44600)
	p := startProxy(t, rtpengineConfig(fmt.Sprintf("udp:127.0.0.1:%d=1", a.ngPort), fmt.Sprintf("udp:127.0.0.1:%d=1", b.ngPort)))
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	used := map[string]int{}
	for i := range 8 {
		_, _, atBob, _ := rtpCall(t, alice, bob, aRTP, bRTP, fmt.Sprint("x", i))
		port := mediaOf(t, []byte(atBob)).Port()
		switch {
		case a.owns(port):
			used["a"]++
		case b.owns(port):
			used["b"]++
		}
	}
	if used["a"] == 0 || used["b"] == 0 {
		t.Errorf("8 calls over two equal nodes went %v: want both used", used)
	}

	a.kill()
	start := time.Now()
	for i := range 6 {
		_, _, atBob, _ := rtpCall(t, alice, bob, aRTP, bRTP, fmt.Sprint("y", i)) // fails the test if an INVITE fails
		if port := mediaOf(t, []byte(atBob)).Port(); !b.owns(port) {
			t.Errorf("call %d after node a died got port %d, not node b's", i, port)
		}
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("6 calls after the kill took %v: failover should cost one 300 ms timeout", el)
	}
	if len(p.logLines("rtpengine node down")) != 1 {
		t.Error("node down not logged once")
	}
	out, _ := p.ctl("--json", "relays")
	if !strings.Contains(out, `"enabled": false`) {
		t.Errorf("ctl relays does not show the dead node disabled:\n%s", out)
	}
	resp, err := http.Get(p.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`sipanchor_relay_node_up{node="udp:127.0.0.1:%d",set="0"} 0`, a.ngPort),
		fmt.Sprintf(`sipanchor_relay_node_up{node="udp:127.0.0.1:%d",set="0"} 1`, b.ngPort),
		"sipanchor_relay_node_changes_total 1",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestRtpengineMediaTimeoutEndsCall: rtpengine drops a call whose media
// stopped (--timeout); sipanchor notices by polling query and ends the
// SIP call with a BYE to both ends.
func TestRtpengineMediaTimeoutEndsCall(t *testing.T) {
	rte := startRtpengine(t, 44800, "--timeout=2")
	p := startProxy(t, rtpengineConfig(fmt.Sprintf("udp:127.0.0.1:%d=1", rte.ngPort)))
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	dc, _, _, _ := rtpCall(t, alice, bob, aRTP, bRTP, "to1")
	deadline := time.Now().Add(8 * time.Second)
	var gotA, gotB bool
	for (!gotA || !gotB) && time.Now().Before(deadline) {
		select {
		case m := <-alice.in:
			if r, ok := m.(*sip.Request); ok && r.Method == sip.BYE {
				alice.okTo(r)
				gotA = true
			}
		case m := <-bob.in:
			if r, ok := m.(*sip.Request); ok && r.Method == sip.BYE {
				bob.okTo(r)
				gotB = true
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !gotA || !gotB {
		t.Fatalf("after rtpengine's media timeout: BYE to caller %v, to callee %v", gotA, gotB)
	}
	p.waitIdle("after rtpengine's media timeout")
	if len(p.logLines("rtpengine no longer has the call")) == 0 {
		t.Error("not logged")
	}
	_ = dc
}

// TestRtpengineNodesFromTable: nodes can come from the relay_nodes table;
// `ctl reload` picks up a row added while sipanchor runs, and new calls
// use it once the configured node is disabled through the API.
func TestRtpengineNodesFromTable(t *testing.T) {
	a, b := startRtpengine(t, 45000), startRtpengine(t, 45200)
	nodeA, nodeB := fmt.Sprintf("udp:127.0.0.1:%d", a.ngPort), fmt.Sprintf("udp:127.0.0.1:%d", b.ngPort)
	p := startProxy(t, rtpengineConfig(nodeA+"=1"))
	db, err := sql.Open("sqlite", "file:"+filepath.Join(p.dir, "sipanchor.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO relay_nodes (set_id, socket) VALUES (0, ?)`, nodeB+"=1"); err != nil {
		t.Fatal(err)
	}
	if out, err := p.ctl("reload"); err != nil || !strings.Contains(out, `"reloaded": 2`) {
		t.Fatalf("ctl reload: %v %s", err, out)
	}
	if out, _ := p.ctl("relays"); !strings.Contains(out, nodeB) {
		t.Errorf("ctl relays after reload:\n%s", out)
	}
	if out, err := p.ctl("relay", "disable", nodeA); err != nil {
		t.Fatalf("ctl relay disable: %v %s", err, out)
	}
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	for i := range 3 {
		_, _, atBob, _ := rtpCall(t, alice, bob, aRTP, bRTP, fmt.Sprint("t", i))
		if port := mediaOf(t, []byte(atBob)).Port(); !b.owns(port) {
			t.Errorf("call %d went to port %d, not the reloaded node's", i, port)
		}
	}
}

// TestRtpengineSetByRule: [[relay.set]] match sends calls to a carrier's
// domain to their own set; other calls go to the default set.
func TestRtpengineSetByRule(t *testing.T) {
	a, b := startRtpengine(t, 45400), startRtpengine(t, 45600)
	carrierPort := freePort(t)
	p := startProxy(t, fmt.Sprintf(`[[route]]
match = "sip:*@carrier.test"
to = "sip:127.0.0.8:%d"

[relay]
engine = "rtpengine"
rtpengine_tout = "300ms"
rtpengine_retr = 1

[[relay.set]]
id = 1
match = "sip:*@carrier.test"
nodes = ["udp:127.0.0.1:%d"]

[[relay.set]]
id = 0
nodes = ["udp:127.0.0.1:%d"]
`, carrierPort, b.ngPort, a.ngPort)+officePeer)
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	carrier := newUAOn(t, "carrier", fmt.Sprintf("127.0.0.8:%d", carrierPort), p)
	bob.register(600)
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	_, _, atBob, _ := rtpCall(t, alice, bob, aRTP, bRTP, "s0")
	if port := mediaOf(t, []byte(atBob)).Port(); !a.owns(port) {
		t.Errorf("a local call went to port %d, not the default set's node", port)
	}
	alice.inviteSDP("sip:+15551234@carrier.test", strings.ReplaceAll(sdpWith(aRTP.port(), ""), "192.168.1.50", "127.0.0.2"))
	inv := carrier.recv("INVITE to the carrier", isRequest("INVITE")).(*sip.Request)
	if port := mediaOf(t, inv.Body()).Port(); !b.owns(port) {
		t.Errorf("a carrier call went to port %d, not set 1's node", port)
	}
}
