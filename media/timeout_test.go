package media

import (
	"errors"
	"testing"
	"time"
)

func TestTimedOut(t *testing.T) {
	base := time.Unix(1_000_000, 0)
	at := func(s float64) time.Time { return base.Add(time.Duration(s * float64(time.Second))) }
	// side: last packet at `last` seconds (<0: never), expected to send
	// since `since` seconds (<0: not expected).
	side := func(last, since float64) sideClock {
		var sc sideClock
		if last >= 0 {
			sc.last = at(last)
		}
		if since >= 0 {
			sc.expected, sc.since = true, at(since)
		}
		return sc
	}
	answered := func(a, b sideClock) clocks {
		return clocks{created: base, answered: base, sides: [2]sideClock{a, b}}
	}
	const never, held = -1, -1
	tests := []struct {
		name string
		mode TimeoutMode
		c    clocks
		now  float64
		want string // "" = lives; else Err().Error()
	}{
		{"never answered", TimeoutAll, clocks{created: base}, 1.5, "media timeout"},
		{"ringing", TimeoutAny, clocks{created: base}, 0.5, ""},
		{"no media since the answer", TimeoutAny, answered(side(never, 0), side(never, 0)), 1.5, "media timeout"},
		{"no media yet", TimeoutAny, answered(side(never, 0), side(never, 0)), 0.5, ""},

		{"all: both stopped", TimeoutAll, answered(side(1, 0), side(1, 0)), 2.5, "media timeout"},
		{"all: both talking", TimeoutAll, answered(side(5, 0), side(5, 0)), 5.5, ""},
		{"all: callee silent, caller talking", TimeoutAll, answered(side(5, 0), side(1, 0)), 5.5, ""},
		{"unknown mode is all", TimeoutUnknown, answered(side(5, 0), side(1, 0)), 5.5, ""},

		{"any: callee silent", TimeoutAny, answered(side(5, 0), side(1, 0)), 5.5, "media timeout: callee silent"},
		{"any: caller silent", TimeoutAny, answered(side(1, 0), side(5, 0)), 5.5, "media timeout: caller silent"},
		{"any: both silent", TimeoutAny, answered(side(1, 0), side(1, 0)), 2.5, "media timeout: both sides silent"},
		{"any: both talking", TimeoutAny, answered(side(5, 0), side(5, 0)), 5.5, ""},
		{"any: callee never sent", TimeoutAny, answered(side(1.2, 0), side(never, 0)), 1.5, "media timeout: callee silent"},

		// Hold: the side that is not to send never times the call out.
		{"any: callee held (recvonly), caller's music on hold", TimeoutAny, answered(side(5, 0), side(1, held)), 5.5, ""},
		{"all: callee held, caller's music on hold", TimeoutAll, answered(side(5, 0), side(1, held)), 5.5, ""},
		{"any: holder sendonly but silent", TimeoutAny, answered(side(1, 0), side(5, held)), 5.5, "media timeout: caller silent"},
		{"all: inactive, nobody sends", TimeoutAll, answered(side(1, held), side(1, held)), 100, ""},
		{"any: inactive, nobody sends", TimeoutAny, answered(side(1, held), side(1, held)), 100, ""},
		{"any: inactive from the start", TimeoutAny, answered(side(never, held), side(never, held)), 100, ""},

		// Resume: a side's clock starts when it is expected to send again.
		{"any: just resumed", TimeoutAny, answered(side(10.2, 0), side(1, 10)), 10.8, ""},
		{"any: resumed, callee still silent", TimeoutAny, answered(side(11.2, 0), side(1, 10)), 11.5, "media timeout: callee silent"},
		{"all: resumed from inactive", TimeoutAll, answered(side(1, 10), side(1, 10)), 10.8, ""},
		{"all: resumed from inactive, nobody sends", TimeoutAll, answered(side(1, 10), side(1, 10)), 11.5, "media timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{SetupTimeout: time.Second, SessionTimeout: time.Second, RingTimeout: time.Second, TimeoutMode: tt.mode}
			why, err := timedOut(cfg, tt.c, at(tt.now))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("timed out (%s: %v), want the call to live", why, err)
			case tt.want != "" && (err == nil || err.Error() != tt.want || !errors.Is(err, ErrMediaTimeout)):
				t.Errorf("err = %v, want %q wrapping ErrMediaTimeout", err, tt.want)
			}
		})
	}
}

// sdpDir is an SDP of one audio stream with a direction attribute ("" =
// none), on addr and port.
func sdpDir(addr string, port int, dir string) *SDPInfo {
	info := audio(addr, port)
	if dir == "" {
		dir = "sendrecv"
	}
	info.Streams[0].Direction = dir
	if port == 0 {
		info.Streams[0].RTCPPort = 0
	}
	return info
}

// expected reports which sides the session counts on to send.
func expected(s *Session) (caller, callee bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clocks()
	return c.sides[0].expected, c.sides[1].expected
}

func TestExpectedSendersFollowSDP(t *testing.T) {
	tests := []struct {
		name           string
		offer, answer  *SDPInfo
		caller, callee bool
	}{
		{"sendrecv", sdpDir("127.0.0.250", 4000, ""), sdpDir("127.0.0.251", 5000, ""), true, true},
		{"caller holds: sendonly/recvonly", sdpDir("127.0.0.250", 4000, "sendonly"), sdpDir("127.0.0.251", 5000, "recvonly"), true, false},
		{"callee holds: recvonly/sendonly", sdpDir("127.0.0.250", 4000, "recvonly"), sdpDir("127.0.0.251", 5000, "sendonly"), false, true},
		{"inactive", sdpDir("127.0.0.250", 4000, "inactive"), sdpDir("127.0.0.251", 5000, "inactive"), false, false},
		{"sendonly answered sendrecv", sdpDir("127.0.0.250", 4000, "sendonly"), sdpDir("127.0.0.251", 5000, ""), true, false},
		{"c=0.0.0.0 hold", sdpDir("0.0.0.0", 4000, ""), sdpDir("127.0.0.251", 5000, ""), false, false},
		{"answer rejects the stream", sdpDir("127.0.0.250", 4000, ""), sdpDir("127.0.0.251", 0, ""), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRelay(t, 4, nil)
			s, _ := r.Open("dir")
			if _, err := s.Apply(SideA, tt.offer, true, false); err != nil {
				t.Fatal(err)
			}
			if a, b := expected(s); a || b {
				t.Errorf("before the answer: expected %v/%v, want nobody", a, b)
			}
			if _, err := s.Apply(SideB, tt.answer, true, true); err != nil {
				t.Fatal(err)
			}
			if a, b := expected(s); a != tt.caller || b != tt.callee {
				t.Errorf("expected caller %v callee %v, want %v %v", a, b, tt.caller, tt.callee)
			}
		})
	}
}

// Hold and resume by re-INVITE move who is expected to send, and a resume
// starts the resumed side's clock afresh.
func TestHoldAndResumeMoveExpectation(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	s, _, _ := call(t, r)
	since := func() time.Time {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.clocks().sides[1].since
	}
	first := since()
	apply := func(from Side, info *SDPInfo, answer bool) {
		t.Helper()
		if _, err := s.Apply(from, info, true, answer); err != nil {
			t.Fatal(err)
		}
	}
	apply(SideA, sdpDir("127.0.0.250", 4000, "sendonly"), false)
	if a, b := expected(s); !a || b {
		t.Errorf("hold offered: expected %v/%v, want the caller only", a, b)
	}
	apply(SideB, sdpDir("127.0.0.251", 5000, "recvonly"), true)
	if a, b := expected(s); !a || b {
		t.Errorf("on hold: expected %v/%v, want the caller only", a, b)
	}
	beforeResume := time.Now()
	apply(SideA, sdpDir("127.0.0.250", 4000, ""), false)
	if a, b := expected(s); !a || b {
		t.Errorf("resume offered: expected %v/%v, want the caller only until the answer", a, b)
	}
	apply(SideB, sdpDir("127.0.0.251", 5000, ""), true)
	if a, b := expected(s); !a || !b {
		t.Errorf("resumed: expected %v/%v, want both", a, b)
	}
	if got := since(); got.Before(beforeResume) || !got.After(first) {
		t.Errorf("callee's clock starts at %v, want at the resume (after %v)", got, beforeResume)
	}
	// A refresh that changes nothing does not restart the clock.
	resumed := since()
	apply(SideA, sdpDir("127.0.0.250", 4000, ""), false)
	apply(SideB, sdpDir("127.0.0.251", 5000, ""), true)
	if got := since(); !got.Equal(resumed) {
		t.Errorf("a session refresh moved the callee's clock from %v to %v", resumed, got)
	}
}

func TestRestoreKeepsHold(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	s, err := r.Open("held")
	if err != nil {
		t.Fatal(err)
	}
	s.Apply(SideA, sdpDir("127.0.0.250", 4000, "sendonly"), true, false)
	s.Apply(SideB, sdpDir("127.0.0.251", 5000, "recvonly"), true, true)
	st := s.State()
	r.Close()
	r2, err := NewRelay(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	s2, err := r2.Restore("held", st)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := expected(s2); !a || b {
		t.Errorf("restored hold: expected %v/%v, want the caller only", a, b)
	}
	// A state saved before directions were kept restores as sendrecv.
	legacy := st
	legacy.Streams = []StreamState{{Caller: st.Streams[0].Caller, Callee: st.Streams[0].Callee}}
	legacy.Streams[0].Callee.NoSend, legacy.Streams[0].Caller.NoRecv = false, false
	r2.Delete("held")
	s3, err := r2.Restore("legacy", legacy)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := expected(s3); !a || !b {
		t.Errorf("legacy state: expected %v/%v, want both", a, b)
	}
}

// With real packets and the real sweeper: the caller keeps talking, the
// callee has gone silent. Mode any ends the call and says who; mode all
// keeps it.
func TestTimeoutModeOneWayCall(t *testing.T) {
	for _, tt := range []struct {
		mode TimeoutMode
		want string // "" = the call must live
	}{
		{TimeoutAny, "media timeout: callee silent"},
		{TimeoutAll, ""},
	} {
		t.Run(tt.mode.String(), func(t *testing.T) {
			r := newTestRelay(t, 4, func(c *Config) {
				c.SetupTimeout, c.SessionTimeout, c.TimeoutMode = time.Second, time.Second, tt.mode
			})
			s, portA, portB := call(t, r)
			caller, _ := talking(t, s, portA, portB)
			silentFrom := time.Now() // the callee's one packet
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			deadline := time.After(2500 * time.Millisecond) // timeout + the sweeper's tick + slack
			for seq := uint16(2); ; seq++ {
				select {
				case <-s.Done():
					if tt.want == "" {
						t.Fatalf("ended (%v) after %v while the caller talks", s.Err(), time.Since(silentFrom))
					}
					if err := s.Err(); !errors.Is(err, ErrMediaTimeout) || err.Error() != tt.want {
						t.Errorf("Err = %v, want %q", err, tt.want)
					}
					return
				case <-deadline:
					if tt.want != "" {
						t.Fatalf("still up %v after the callee went silent", time.Since(silentFrom))
					}
					return
				case <-tick.C:
					send(t, caller, portA, rtpPacket(t, seq, 'a'))
				}
			}
		})
	}
}
