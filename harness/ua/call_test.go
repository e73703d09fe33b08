package ua

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sippCallee starts SIPp on ip as the callee of one call (args say how),
// and a UA on uaIP (with cfg's other fields) whose server it is; target is
// a URI at SIPp.
func sippCallee(t *testing.T, ip, uaIP string, cfg Config, args ...string) (s *sippRun, u *UA, target string) {
	t.Helper()
	port := freePort(t, ip)
	tcp := cfg.Transport == "tcp"
	if tcp {
		args = append(args, "-t", "t1")
	}
	s = startSIPp(t, ip, port, tcp, append(args, "-m", "1")...)
	cfg.Local, cfg.Server = netip.MustParseAddr(uaIP), netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
	return s, newUA(t, cfg), "sip:callee@" + cfg.Server.String()
}

// echoArgs make SIPp echo RTP on a free media port of ip.
func echoArgs(t *testing.T, ip string) []string {
	return []string{"-rtp_echo", "-mi", ip, "-mp", strconv.Itoa(freePort(t, ip))}
}

// TestCallSIPpEcho: the UA calls SIPp's UAS, which echoes RTP: the call is
// answered, its own packets come back from SIPp's media port, and the BYE
// ends it; SIPp counts one successful call.
func TestCallSIPpEcho(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s, u, target := sippCallee(t, "127.0.61.1", "127.0.61.2", Config{Transport: transport},
				append([]string{"-sn", "uas"}, echoArgs(t, "127.0.61.1")...)...)
			ctx := ctxFor(t, 20*time.Second)
			c, err := u.Call(ctx, target)
			if err != nil {
				t.Fatalf("call: %v\n%s", err, s.messages(t))
			}
			if c.State() != StateConfirmed {
				t.Fatalf("state %v after Call, want confirmed", c.State())
			}
			if err := c.StartMedia(20 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, func() bool { return c.Received().Echoes >= 10 },
				"our RTP echoed back: got %v, sent %v", lazy(func() any { return c.Received() }), lazy(func() any { return c.Sent() }))
			st := c.Received()
			if st.Sources[c.RemoteMedia()] == 0 || st.PayloadTypes[0] == 0 {
				t.Errorf("received %+v: want PCMU from %v", st, c.RemoteMedia())
			}
			if err := c.Hangup(ctx); err != nil {
				t.Fatalf("hangup: %v", err)
			}
			if c.EndedBy() != "local" || c.State() != StateEnded {
				t.Errorf("ended by %q in state %v, want local, ended", c.EndedBy(), c.State())
			}
			s.wait(t)
		})
	}
}

// TestCallRejected: a SIPp UAS answering 486 makes Call return a
// *StatusError 486, after ACKing it (SIPp's scenario waits for the ACK).
func TestCallRejected(t *testing.T) {
	s, u, target := sippCallee(t, "127.0.61.3", "127.0.61.4", Config{}, "-sf", scenario("ua_uas_busy.xml"))
	c, err := u.Call(ctxFor(t, 20*time.Second), target)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 486 {
		t.Fatalf("call: %v, want a 486 StatusError", err)
	}
	if c.State() != StateRejected || c.EndedBy() != "remote" {
		t.Errorf("state %v ended by %q, want rejected by remote", c.State(), c.EndedBy())
	}
	s.wait(t)
	if msgs := s.messages(t); !strings.Contains(msgs, "ACK "+target) {
		t.Errorf("SIPp got no ACK:\n%s", msgs)
	}
}
