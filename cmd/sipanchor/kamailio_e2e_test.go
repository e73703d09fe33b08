package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// startKamailio runs Debian's Kamailio 5.6 with testdata/kamailio, its
// rtpengine module pointed at ngPort. The test fails, never skips,
// without it: .ci/run installs it.
func startKamailio(t *testing.T, ngPort int) int {
	t.Helper()
	requireE2E(t)
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		t.Fatal("kamailio not found: install Debian's kamailio (bash .ci/run does)")
	}
	tpl, err := os.ReadFile("../../testdata/kamailio/kamailio.cfg")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	dir := t.TempDir()
	cfg := strings.NewReplacer("@KPORT@", fmt.Sprint(port), "@NGPORT@", fmt.Sprint(ngPort)).Replace(string(tpl))
	path := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(bin, "-DD", "-E", "-f", path, "-P", filepath.Join(dir, "k.pid"), "-Y", dir, "-m", "64", "-M", "8")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("kamailio output:\n%s", tail(out.String(), 60))
		}
	})
	// Ready when a worker answers: an OPTIONS with Max-Forwards 0 gets 483.
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	eventually(t, 10*time.Second, func() bool {
		branch := fmt.Sprintf("z9hG4bK-ready-%d", time.Now().UnixNano())
		_, _ = fmt.Fprintf(c, "OPTIONS sip:127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s\r\n"+
			"Max-Forwards: 0\r\nFrom: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:127.0.0.1:%d>\r\n"+
			"Call-ID: %s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", port, c.LocalAddr(), branch, port, branch)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(buf) // fails at once (ICMP) while nothing is bound
		return err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 483")
	}, "kamailio did not answer OPTIONS on %d:\n%s", port, out)
	return port
}

// TestKamailioUsesSipanchorRelay: a call through Kamailio with its
// rtpengine module pointed at sipanchor's NG server has its media relayed
// by sipanchor, both ways, and its BYE frees the session.
func TestKamailioUsesSipanchorRelay(t *testing.T) {
	ngPort := freePort(t)
	p := startProxy(t, fmt.Sprintf("[ng]\nlisten = \"127.0.0.1:%d\"\n", ngPort))
	kport := startKamailio(t, ngPort)
	kam := fmt.Sprintf("127.0.0.1:%d", kport)

	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	alice.proxy, bob.proxy = kam, kam
	aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
	plain := func(ip string, port int) string { return strings.ReplaceAll(sdpWith(port, ""), "192.168.1.50", ip) }

	dc := alice.inviteSDP("sip:bob@"+bob.contact, plain("127.0.0.2", aRTP.port()))
	inv := bob.recv("INVITE via Kamailio", isRequest("INVITE")).(*sip.Request)
	toBob := mediaOf(t, inv.Body())
	if toBob.Addr() != netip.MustParseAddr("127.0.0.1") || toBob.Port() == uint16(aRTP.port()) {
		t.Fatalf("the callee was not given sipanchor's relay: %s\n%s", toBob, inv.Body())
	}
	bob.answerSDP(inv, "kb1", plain("127.0.0.3", bRTP.port()))
	ok := alice.recv("200 via Kamailio", isResponse(200, "INVITE")).(*sip.Response)
	toAlice := mediaOf(t, ok.Body())
	if toAlice.Addr() != netip.MustParseAddr("127.0.0.1") || toAlice.Port() == uint16(bRTP.port()) {
		t.Fatalf("the caller was not given sipanchor's relay: %s", toAlice)
	}
	if h := p.health(); h["relay_sessions"] != 1 {
		t.Errorf("relay sessions %v during the call, want 1", h["relay_sessions"])
	}
	dc.confirmed(ok)
	alice.request(dc, "ACK")
	bob.recv("ACK", isRequest("ACK"))

	aRTP.sendTo(toAlice, 'a')
	bRTP.sendTo(toBob, 'b')
	aRTP.recv('b')
	aRTP.sendTo(toAlice, 'c')
	bRTP.recv('c')

	alice.request(dc, "BYE")
	bob.okTo(bob.recv("BYE via Kamailio", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))
	p.waitIdle("after BYE") // Kamailio's rtpengine_manage deleted the session over NG
}
