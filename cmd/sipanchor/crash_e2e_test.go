package main

import (
	"database/sql"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metric reads one unlabelled counter or gauge from /metrics.
func (p *proxy) metric(name string) float64 {
	p.t.Helper()
	resp, err := http.Get(p.api + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		p.t.Fatalf("/metrics: %v", err)
	}
	mf, ok := mfs[name]
	if !ok || len(mf.GetMetric()) == 0 {
		p.t.Fatalf("no metric %s", name)
	}
	m := mf.GetMetric()[0]
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// kill9 ends sipanchor with SIGKILL: nothing is flushed, nothing closed.
func (p *proxy) kill9() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatal(err)
	}
	<-p.done
	p.cmd = nil
}

// savedDialogs counts the dialogs in the store file.
func (p *proxy) savedDialogs() int {
	p.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(p.dir, "sipanchor.db")+"?mode=ro")
	if err != nil {
		p.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM dialogs`).Scan(&n); err != nil {
		return 0 // not created yet
	}
	return n
}

// TestLifetimeSurvivesKill9: relay.lifetime still ends a call whose
// sipanchor was killed (-9) and restarted mid-call: both ends get their
// BYE when the lifetime, counted from the answer, runs out.
func TestLifetimeSurvivesKill9(t *testing.T) {
	p := startProxy(t, "[relay]\nlifetime = \"3s\"\n")
	before := time.Now() // the answer comes after this
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	eventually(t, 2*time.Second, func() bool { return p.savedDialogs() == 1 }, "the answered call was never saved")
	p.kill9()
	p.start()
	for _, u := range []*ua{c.alice, c.bob} {
		u.okTo(u.recv("BYE at the end of the lifetime", isRequest("BYE")))
	}
	if took := time.Since(before); took < 3*time.Second || took > 5*time.Second {
		t.Errorf("BYEs %v after the INVITE, want the 3 s lifetime from the answer", took)
	}
	eventually(t, 2*time.Second, func() bool {
		return len(p.logLines(`msg="dialog ended"`)) > 0 && len(p.logLines("dialog lifetime reached")) > 0
	},
		"the call did not end with reason 'dialog lifetime reached'")
}

// TestKill9DuringSetupStill200: sipanchor is killed (-9) while the callee
// rings and restarted; the callee's 200, which no transaction of the new
// process matches, is relayed statelessly along the Via to the caller,
// and the caller's ACK and BYE reach the callee.
func TestKill9DuringSetupStill200(t *testing.T) {
	p := startProxy(t, "[relay]\nengage = \"never\"\n")
	alice := newUA(t, "alice", "127.0.0.2", p, "192.168.1.60")
	bob := newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	bob.register(600)
	dc := alice.invite("sip:bob@example.test")
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	bob.answer(inv, 180, "Ringing", "b1")
	alice.recv("180", isResponse(180, "INVITE"))
	p.kill9()
	p.start()
	bob.answer(inv, 200, "OK", "b1")
	ok := alice.recv("200 relayed by the restarted sipanchor", isResponse(200, "INVITE")).(*sip.Response)
	dc.confirmed(ok)
	alice.request(dc, "ACK")
	bob.recv("ACK", isRequest("ACK"))
	alice.request(dc, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))
}

// TestAnsweredNeverACKedIsEnded: a caller that never ACKs its 2xx (a flood
// of answered INVITEs) does not hold the call and its relay ports for the
// setup timeout: after 64×T1 both ends get a BYE and everything is freed.
func TestAnsweredNeverACKedIsEnded(t *testing.T) {
	p := startProxySIP(t, `t1 = "50ms"`, "[media]\nsetup_timeout = \"60s\"\n")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP := newRTP(t, "127.0.0.2")
	start := time.Now()
	alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	bob.answerSDP(inv, "b1", sdpWith(4000, ""))
	alice.recv("200", isResponse(200, "INVITE")) // and no ACK
	bob.okTo(bob.recv("BYE after 64×T1 without ACK", func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == sip.BYE
	}))
	alice.okTo(alice.recv("BYE", isRequest("BYE")))
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("BYEs after %v, want about 64×T1 = 3.2 s", took)
	}
	p.waitIdle("after the unacknowledged call")
	if n := p.metric("sipanchor_calls_no_ack_total"); n != 1 {
		t.Errorf("sipanchor_calls_no_ack_total = %v, want 1", n)
	}
}

// TestAnsweredNeverACKedAcrossRestart: sipanchor is killed (-9) when the
// caller holds the 200 and restarted; the caller never ACKs and sends no
// media. The ACK wait is armed again from the stored answer time, so the
// call is ended with BYEs about 64×T1 after the answer, not left for its
// lifetime.
func TestAnsweredNeverACKedAcrossRestart(t *testing.T) {
	p := startProxySIP(t, `t1 = "50ms"`, "[media]\nsetup_timeout = \"60s\"\n")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP := newRTP(t, "127.0.0.2")
	alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	bob.answerSDP(inv, "b1", sdpWith(4000, ""))
	alice.recv("200", isResponse(200, "INVITE")) // and no ACK, ever
	answered := time.Now()
	p.kill9()
	p.start()
	bob.okTo(bob.recv("BYE after 64×T1 without ACK, across the restart", isRequest("BYE")))
	alice.okTo(alice.recv("BYE", isRequest("BYE")))
	if took := time.Since(answered); took > 6*time.Second {
		t.Errorf("BYEs %v after the answer, want about 64×T1 = 3.2 s", took)
	}
	p.waitIdle("after the unacknowledged call")
}

// TestACKedCallSurvivesRestartPastTheACKWait: a call ACKed and talking
// when sipanchor is killed (-9) is not ended by the ACK wait after the
// restart, even if the ACK's save had not reached the disk: media from
// the caller since the restart proves it alive.
func TestACKedCallSurvivesRestartPastTheACKWait(t *testing.T) {
	p := startProxySIP(t, `t1 = "50ms"`, "")
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	p.kill9()
	p.start()
	start := time.Now()
	m := byte('c')
	for time.Since(start) < 5*time.Second { // past 64×T1 = 3.2 s
		c.twoWay(t, m)
		m += 2
	}
	if n := p.metric("sipanchor_calls_no_ack_total"); n != 0 {
		t.Errorf("sipanchor_calls_no_ack_total = %v: an ACKed call was ended", n)
	}
}

// killOne runs one anchored call between alice and bob on a fresh
// sipanchor, killed (-9) and restarted at k (see chaosCall).
func killOne(t *testing.T, k killPoint) {
	p := startProxy(t, "")
	alice, bob := newUA(t, "alice", "127.0.0.2", p, "192.168.1.60"), newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	bob.register(600)
	chaosCall(t, p, alice, bob, k)
}

// TestKill9RightAfterTheAnswer: sipanchor is killed (-9) the moment the
// caller holds the 200, before the ACK. Durable before visible: the call
// and its relay session were on disk before that 200 left, so after the
// restart the ACK passes and media flows both ways on the same ports.
func TestKill9RightAfterTheAnswer(t *testing.T) { killOne(t, killAnswered) }

// TestKill9WhileRingingKeepsTheRelay: an anchored call rings when
// sipanchor is killed (-9) and restarted. The early dialog and its relay
// session were on disk before the INVITE left, so the callee's 200 (which
// no transaction of the new process knows) is answered by the same relay:
// the caller is given the relay ports, and media flows both ways.
func TestKill9WhileRingingKeepsTheRelay(t *testing.T) { killOne(t, killRinging) }

// TestKill9DuringReinvite: sipanchor is killed (-9) while a re-INVITE that
// moves the caller's media is at the callee, and restarted. The exchange
// was saved before the re-INVITE left, so the callee's 200 is answered by
// the relay after the restart (with the caller's own CSeq), and media
// flows both ways to the new port.
func TestKill9DuringReinvite(t *testing.T) { killOne(t, killInReinvite) }
