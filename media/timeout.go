package media

import (
	"fmt"
	"time"
)

// TimeoutMode says whose silence ends a call once its media has flowed.
type TimeoutMode uint8

const (
	// TimeoutUnknown is the zero value; the relay treats it as TimeoutAll.
	TimeoutUnknown TimeoutMode = iota
	// TimeoutAll ends a call when no packet has come from either side for
	// SessionTimeout: any packet keeps the whole call up (rtpproxy's
	// per-session timer).
	TimeoutAll
	// TimeoutAny ends a call when one side that its SDP says should send
	// has been silent for SessionTimeout: it catches one-way failures (a
	// dead NAT mapping, a phone that crashed mid-call).
	TimeoutAny
)

func (m TimeoutMode) String() string {
	switch m {
	case TimeoutAll:
		return "all"
	case TimeoutAny:
		return "any"
	}
	return "unknown"
}

// flow is what a side's latest SDP says of one stream: whether it sends
// and whether it can be sent to. RFC 3264 §5.1: sendrecv, sendonly,
// recvonly, inactive; §8.4: c=0.0.0.0 (RFC 2543 hold) means "do not send
// to me", and a side that holds this way is not counted on to send either;
// §6: port 0 disables the stream. The zero flow (no SDP yet) does neither.
type flow uint8

const (
	flowSend flow = 1 << iota
	flowRecv
)

func flowOf(si StreamInfo) flow {
	if si.Port == 0 || (si.Addr.IsValid() && si.Addr.IsUnspecified()) {
		return 0
	}
	switch si.Direction {
	case "sendonly":
		return flowSend
	case "recvonly":
		return flowRecv
	case "inactive":
		return 0
	}
	return flowSend | flowRecv
}

// expects reports whether side i (0 caller, 1 callee) should be sending on
// the stream: it says it sends and the other side says it receives.
func (st *stream) expects(i int) bool {
	return st.flow[i]&flowSend != 0 && st.flow[1-i]&flowRecv != 0
}

// expectFrom starts the clock of each side that has just become expected
// to send (answer, resume) and stops that of each side that no longer is
// (hold). Call with s.mu held, after the flows changed.
func (s *Session) expectFrom(now time.Time) {
	for _, st := range s.streams {
		if st == nil {
			continue
		}
		for i := range 2 {
			switch {
			case !st.expects(i):
				st.since[i] = time.Time{}
			case st.since[i].IsZero():
				st.since[i] = now
			}
		}
	}
}

// clocks is what the sweeper knows of a session at one tick.
type clocks struct {
	created, answered time.Time
	sides             [2]sideClock // [0] caller, [1] callee
}

// sideClock is one side: its newest packet (RTP or RTCP, any stream) and
// whether, and since when, its SDP says it should send on some stream.
type sideClock struct {
	last     time.Time
	expected bool
	since    time.Time // the earliest start among the streams it is expected on
}

// clocks snapshots the session for timedOut. Call with s.mu held.
func (s *Session) clocks() clocks {
	c := clocks{created: s.created, answered: s.answered}
	for _, st := range s.streams {
		if st == nil {
			continue
		}
		for i, eps := range [][2]*endpoint{st.a, st.b} {
			sc := &c.sides[i]
			for _, e := range eps {
				if t := e.lastIn.Load(); t != 0 {
					sc.last = later(sc.last, time.Unix(0, t))
				}
			}
			if st.expects(i) && (!sc.expected || st.since[i].Before(sc.since)) {
				sc.expected, sc.since = true, st.since[i]
			}
		}
	}
	return c
}

// expired says why the session has timed out at now, and the error to end
// it with; "" and nil while it lives.
func (s *Session) expired(now time.Time) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return "", nil
	}
	return timedOut(s.r.cfg, s.clocks(), now)
}

// timedOut applies the timeouts of cfg to c at now:
//
//   - not answered for RingTimeout;
//   - answered, and no packet from anyone since, for SetupTimeout;
//   - then, TimeoutAll: no packet from either side for SessionTimeout;
//     TimeoutAny: a side expected to send silent for SessionTimeout.
//
// A side's silence counts from its last packet, or from when it became
// expected to send (answer, resume) if later. When no side is expected to
// send (held both ways, inactive) nothing times out.
func timedOut(cfg Config, c clocks, now time.Time) (string, error) {
	if c.answered.IsZero() {
		if cfg.RingTimeout > 0 && now.Sub(c.created) > cfg.RingTimeout {
			return "offered but never answered", ErrMediaTimeout
		}
		return "", nil
	}
	var last, start time.Time // newest packet; latest start of an expected side
	held := true
	for _, sc := range c.sides {
		last = later(last, sc.last)
		if sc.expected {
			held = false
			start = later(start, sc.since)
		}
	}
	if held {
		return "", nil
	}
	start = later(start, c.answered)
	if !last.After(c.answered) {
		if cfg.SetupTimeout > 0 && now.Sub(start) > cfg.SetupTimeout {
			return "no media since the answer", ErrMediaTimeout
		}
		return "", nil
	}
	if cfg.SessionTimeout <= 0 {
		return "", nil
	}
	if cfg.TimeoutMode != TimeoutAny {
		if now.Sub(later(last, start)) > cfg.SessionTimeout {
			return "media stopped", ErrMediaTimeout
		}
		return "", nil
	}
	var silent []string
	for i, sc := range c.sides {
		if sc.expected && now.Sub(later(sc.last, later(sc.since, c.answered))) > cfg.SessionTimeout {
			silent = append(silent, Side(i+1).String())
		}
	}
	switch len(silent) {
	case 0:
		return "", nil
	case 1:
		return silent[0] + " silent", fmt.Errorf("%w: %s silent", ErrMediaTimeout, silent[0])
	}
	return "both sides silent", fmt.Errorf("%w: both sides silent", ErrMediaTimeout)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
