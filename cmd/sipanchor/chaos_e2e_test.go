package main

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// killPoint is where in a call the chaos test kills sipanchor.
type killPoint int

const (
	killRinging    killPoint = iota // the INVITE is at the callee, no 200 yet
	killAnswered                    // the caller holds the 200, no ACK yet
	killMidCall                     // media flowing
	killInReinvite                  // a re-INVITE moving the caller's media is at the callee
	killPoints
)

func (k killPoint) String() string {
	return [...]string{"ringing", "answered", "mid-call", "in re-INVITE"}[k]
}

// TestChaosKill9: 32 calls, each with sipanchor killed (-9) at a point
// drawn at random (ringing, at the 200, mid-call, during a re-INVITE) and
// restarted. No registration is lost, no answered call is lost (media
// both ways within 1 s of the restart, and a BYE ends it), and nothing is
// left behind.
func TestChaosKill9(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "192.168.1.60")
	bob := newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	bob.register(3600)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))
	counts := map[killPoint]int{}
	for i := range 32 {
		k := killPoint(rng.IntN(int(killPoints)))
		if i < int(killPoints) {
			k = killPoint(i) // every point at least once
		}
		counts[k]++
		t.Logf("call %d: kill -9 %s", i, k)
		chaosCall(t, p, alice, bob, k)
		if regs := p.registrations(); len(regs) != 1 {
			t.Fatalf("after restart %d: %d registrations, want bob's", i, len(regs))
		}
	}
	p.waitIdle("after the chaos")
	t.Logf("kill points: %v", counts)
}

// chaosCall places one anchored call from alice to bob, kills and
// restarts sipanchor at k, then checks media both ways within 1 s of the
// restart and ends the call with a BYE; nothing may be left after it.
func chaosCall(t *testing.T, p *proxy, alice, bob *ua, k killPoint) {
	t.Helper()
	c := &anchoredCall{alice: alice, bob: bob, aRTP: newRTP(t, "127.0.0.2"), bRTP: newRTP(t, "127.0.0.3")}
	restart := func() time.Time { p.kill9(); p.start(); return time.Now() }
	var restarted time.Time
	tag := "b" + randTag()
	c.dc = alice.inviteSDP("sip:bob@example.test", sdpWith(c.aRTP.port(), ""))
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	c.toBob = mediaOf(t, inv.Body())
	if k == killRinging {
		bob.answer(inv, 180, "Ringing", tag)
		alice.recv("180", isResponse(180, "INVITE"))
		restarted = restart()
	}
	c.dd = bob.answerSDP(inv, tag, sdpWith(c.bRTP.port(), ""))
	ok := alice.recv("200", isResponse(200, "INVITE")).(*sip.Response)
	if k == killAnswered {
		restarted = restart()
		// The ACK is late, so bob resends his 200: the restarted
		// sipanchor relays it as the first one was, from the saved dialog.
		bob.answerSDP(inv, tag, sdpWith(c.bRTP.port(), ""))
		sameAs(t, "200 resent after the restart", alice.recv("200 resent", isResponse(200, "INVITE")).(*sip.Response), ok)
	}
	c.toAlice = mediaOf(t, ok.Body())
	if c.toAlice.Addr().String() != "127.0.0.1" {
		t.Fatalf("the 200 gave alice %s, not the relay", c.toAlice)
	}
	c.dc.confirmed(ok)
	alice.request(c.dc, "ACK")
	bob.recv("ACK", isRequest("ACK"))
	switch k {
	case killMidCall:
		c.twoWay(t, 'a')
		restarted = restart()
	case killInReinvite:
		moved := newRTP(t, "127.0.0.2")
		alice.requestBody(c.dc, "INVITE", sdpWith(moved.port(), ""))
		reinv := bob.recv("re-INVITE", isRequest("INVITE")).(*sip.Request)
		if got := mediaOf(t, reinv.Body()); got != c.toBob {
			t.Fatalf("re-INVITE gave bob %s, want the call's relay port %s", got, c.toBob)
		}
		restarted = restart()
		bob.respondSDP(reinv, 200, "OK", sdpWith(c.bRTP.port(), ""))
		ok := alice.recv("200 to the re-INVITE", isResponse(200, "INVITE")).(*sip.Response)
		if got := mediaOf(t, ok.Body()); got != c.toAlice {
			t.Fatalf("200 to the re-INVITE after the restart gave alice %s, want the relay's %s", got, c.toAlice)
		}
		if ok.CSeq().SeqNo != uint32(c.dc.cseq) {
			t.Errorf("200 to the re-INVITE: CSeq %d, want alice's own %d", ok.CSeq().SeqNo, c.dc.cseq)
		}
		alice.request(c.dc, "ACK")
		bob.recv("ACK of the re-INVITE", isRequest("ACK"))
		c.aRTP = moved
	}
	c.twoWay(t, 'k')
	if took := time.Since(restarted); took > time.Second {
		t.Errorf("kill %s: media both ways %v after the restart, want within 1 s", k, took)
	}
	alice.request(c.dc, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))
	p.waitIdle("after the call")
}
