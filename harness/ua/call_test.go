package ua

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sippUAS starts SIPp's built-in UAS (180, 200 with SDP, waits ACK and
// BYE) echoing RTP on ip, and a UA on uaIP that sends to it.
func sippUAS(t *testing.T, ip, uaIP string, tcp bool) (*sippRun, *UA, string) {
	t.Helper()
	port := freePort(t, ip)
	args := []string{"-sn", "uas", "-m", "1", "-rtp_echo", "-mi", ip, "-mp", strconv.Itoa(freePort(t, ip))}
	transport := "udp"
	if tcp {
		args = append(args, "-t", "t1")
		transport = "tcp"
	}
	s := startSIPp(t, ip, port, tcp, args...)
	server := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
	u := newUA(t, Config{Local: netip.MustParseAddr(uaIP), Server: server, Transport: transport})
	return s, u, "sip:service@" + server.String()
}

// TestCallSIPpEcho: the UA calls SIPp's UAS, which echoes RTP: the call is
// answered, its own packets come back from SIPp's media port, and the BYE
// ends it; SIPp counts one successful call.
func TestCallSIPpEcho(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s, u, target := sippUAS(t, "127.0.61.1", "127.0.61.2", transport == "tcp")
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
				"our RTP echoed back: got %+v, sent %d", c.Received(), c.Sent())
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
	ip := "127.0.61.3"
	port := freePort(t, ip)
	s := startSIPp(t, ip, port, false, "-sf", scenario("ua_uas_busy.xml"), "-m", "1")
	server := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
	u := newUA(t, Config{Local: netip.MustParseAddr("127.0.61.4"), Server: server})
	c, err := u.Call(ctxFor(t, 20*time.Second), "sip:busy@"+server.String())
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 486 {
		t.Fatalf("call: %v, want a 486 StatusError", err)
	}
	if c.State() != StateRejected || c.EndedBy() != "remote" {
		t.Errorf("state %v ended by %q, want rejected by remote", c.State(), c.EndedBy())
	}
	s.wait(t)
	if msgs := s.messages(t); !strings.Contains(msgs, "ACK sip:busy@") {
		t.Errorf("SIPp got no ACK:\n%s", msgs)
	}
}
