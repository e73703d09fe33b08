package ua

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHoldResumeReinvite: the UA re-INVITEs a SIPp callee (which checks
// each offer): hold with a=sendonly, resume with a=sendrecv, then a move to
// a new RTP port; SIPp's echo reaches the new socket (the old one is
// closed), and SIPp saw the new port in the offer.
func TestHoldResumeReinvite(t *testing.T) {
	s, u, target := sippCallee(t, "127.0.65.1", "127.0.65.2", Config{},
		append([]string{"-sf", scenario("ua_uas_reinvite.xml")}, echoArgs(t, "127.0.65.1")...)...)
	ctx := ctxFor(t, 20*time.Second)
	c, err := u.Call(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartMedia(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return c.Received().Echoes > 5 }, "echo before re-INVITEs")

	if err := c.Hold(ctx); err != nil {
		t.Fatalf("hold: %v\n%s", err, s.messages(t))
	}
	if sdp := string(c.LocalSDP()); !strings.Contains(sdp, "a=sendonly") {
		t.Errorf("hold SDP:\n%s", sdp)
	}
	if err := c.Resume(ctx); err != nil {
		t.Fatalf("resume: %v", err)
	}
	old := c.LocalMedia()
	if err := c.Reinvite(ctx, true); err != nil {
		t.Fatalf("re-INVITE: %v", err)
	}
	moved := c.LocalMedia()
	if moved == old || moved.Addr() != old.Addr() {
		t.Fatalf("RTP moved from %v to %v: want a new port", old, moved)
	}
	before := c.Received().Echoes
	eventually(t, 5*time.Second, func() bool { return c.Received().Echoes > before+5 }, "echo at the new port %v", moved)
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
	if msgs := s.messages(t); !strings.Contains(msgs, "m=audio "+strconv.Itoa(int(moved.Port()))+" ") {
		t.Errorf("SIPp never saw m=audio %d:\n%s", moved.Port(), msgs)
	}
}

// TestIncomingReinvite: SIPp calls the UA, then re-INVITEs it to move its
// RTP to another port (the UA's RTP follows: SIPp's echo comes from the
// new port) and to hold it (the UA answers a=recvonly: SIPp checks).
func TestIncomingReinvite(t *testing.T) {
	ip := "127.0.65.3"
	s, u := sippCaller(t, ip, "127.0.65.4", AnswerPolicy{}, "-sf", scenario("ua_uac_reinvite.xml"), "-rtp_echo")
	ctx := ctxFor(t, 20*time.Second)
	c, err := u.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := c.RemoteMedia()
	if err := c.StartMedia(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return c.Received().Sources[first] > 0 }, "echo from %v", first)
	moved := netip.AddrPortFrom(first.Addr(), first.Port()+2)
	eventually(t, 5*time.Second, func() bool { return c.Received().Sources[moved] > 0 },
		"echo from the re-INVITE's port %v: %v", moved, lazy(func() any { return c.Received() }))
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("SIPp's BYE never ended the call")
	}
	if !strings.Contains(string(c.LocalSDP()), "a=recvonly") {
		t.Errorf("last answer, to hold:\n%s", c.LocalSDP())
	}
	s.wait(t)
}
