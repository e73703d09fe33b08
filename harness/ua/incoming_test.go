package ua

import (
	"errors"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// sippCaller starts a UA on uaIP, then SIPp on ip calling it with args.
func sippCaller(t *testing.T, ip, uaIP string, p AnswerPolicy, args ...string) (*sippRun, *UA) {
	t.Helper()
	port := freePort(t, ip)
	u := newUA(t, Config{Local: netip.MustParseAddr(uaIP), Server: netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))})
	u.SetAnswer(p)
	args = append([]string{u.Addr().String(), "-s", "alice", "-m", "1", "-mi", ip, "-mp", strconv.Itoa(freePort(t, ip))}, args...)
	return startSIPp(t, ip, port, false, args...), u
}

// TestIncomingFromSIPp: SIPp's built-in UAC calls the UA, which answers
// at once; RTP flows both ways (SIPp echoes it) until SIPp's BYE ends the
// call.
func TestIncomingFromSIPp(t *testing.T) {
	s, u := sippCaller(t, "127.0.62.1", "127.0.62.2", AnswerPolicy{}, "-sn", "uac", "-rtp_echo", "-d", "1500")
	ctx := ctxFor(t, 20*time.Second)
	c, err := u.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.State() != StateConfirmed {
		t.Fatalf("state %v, want confirmed", c.State())
	}
	if err := c.StartMedia(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return c.Received().Echoes >= 10 }, "RTP echoed: %v", lazy(func() any { return c.Received() }))
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("SIPp's BYE never ended the call")
	}
	if c.EndedBy() != "remote" {
		t.Errorf("ended by %q, want remote", c.EndedBy())
	}
	s.wait(t)
}

// TestIncomingBusy: with a 486 policy SIPp's call gets 486 (its scenario
// fails otherwise), and the UA's call comes out rejected.
func TestIncomingBusy(t *testing.T) {
	s, u := sippCaller(t, "127.0.62.3", "127.0.62.4", AnswerPolicy{Code: 486}, "-sf", scenario("ua_uac_busy.xml"))
	c, err := u.Incoming(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if c.State() != StateRejected {
		t.Errorf("state %v, want rejected", c.State())
	}
	s.wait(t)
}

// TestIncomingCancelled: SIPp CANCELs while the UA rings: it gets 200
// and 487 (and ACKs), and the UA's call ends, by the remote side.
func TestIncomingCancelled(t *testing.T) {
	s, u := sippCaller(t, "127.0.62.5", "127.0.62.6", AnswerPolicy{RingFor: time.Minute}, "-sf", scenario("ua_uac_cancel.xml"))
	ctx := ctxFor(t, 10*time.Second)
	c, err := u.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = c.WaitAnswer(ctx)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 487 {
		t.Fatalf("answer %v, want 487", err)
	}
	<-c.Done()
	if c.EndedBy() != "remote" || c.State() != StateRejected {
		t.Errorf("ended by %q in state %v, want remote, rejected", c.EndedBy(), c.State())
	}
	s.wait(t)
}

// TestCancelOutgoing: the UA calls a SIPp UAS that rings, then CANCELs:
// SIPp answers 200 and 487, which the UA ACKs (SIPp waits for it).
func TestCancelOutgoing(t *testing.T) {
	s, u, target := sippCallee(t, "127.0.62.7", "127.0.62.8", Config{}, "-sf", scenario("ua_uas_cancel.xml"))
	ctx := ctxFor(t, 20*time.Second)
	c, err := u.Invite(ctx, target)
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	if c.State() != StateRinging {
		t.Fatalf("state %v after Invite, want ringing", c.State())
	}
	if err := c.Cancel(ctx); err != nil {
		t.Fatalf("cancel: %v\n%s", err, s.messages(t))
	}
	if c.EndedBy() != "local" || c.State() != StateRejected {
		t.Errorf("ended by %q in state %v, want local, rejected", c.EndedBy(), c.State())
	}
	s.wait(t)
}

// TestRegisterDigest: a SIPp registrar challenges with 401 and checks the
// answer with verifyauth: the right password registers (SIPp's scenario
// fails on a bad answer), and the 200's Contact expires is reported; a
// wrong password gets 403.
func TestRegisterDigest(t *testing.T) {
	for _, tc := range []struct {
		password string
		code     int // 0: registered
	}{{"secret", 0}, {"wrong", 403}} {
		t.Run(tc.password, func(t *testing.T) {
			s, u, _ := sippCallee(t, "127.0.62.9", "127.0.62.10", Config{Password: tc.password},
				"-sf", scenario("ua_registrar_auth.xml"))
			reg, err := u.Register(ctxFor(t, 10*time.Second), time.Hour)
			if tc.code != 0 {
				var se *StatusError
				if !errors.As(err, &se) || se.Code != tc.code {
					t.Fatalf("register: %v, want %d", err, tc.code)
				}
				<-s.done
				return
			}
			if err != nil {
				t.Fatalf("register: %v\n%s", err, s.messages(t))
			}
			if reg.Expires != 120*time.Second {
				t.Errorf("expires %v, want the 200's 120s", reg.Expires)
			}
			s.wait(t)
		})
	}
}
