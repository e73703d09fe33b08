package media

import (
	"fmt"
	"net/netip"
	"time"
)

// SessionState is what a session needs to be rebuilt after a restart: its
// ports (so that both UAs keep sending to the same place) and what it had
// learnt of each side.
type SessionState struct {
	Created  time.Time     `json:"created"`
	Answered time.Time     `json:"answered,omitzero"`
	Streams  []StreamState `json:"streams"`
}

// StreamState is one m= line; Rejected streams hold no ports.
type StreamState struct {
	Rejected bool          `json:"rejected,omitempty"`
	Caller   EndpointState `json:"caller"`
	Callee   EndpointState `json:"callee"`
}

// EndpointState is one side of a stream: its RTP port (RTCP is +1).
type EndpointState struct {
	Port        int    `json:"port"`
	SDP         string `json:"sdp,omitempty"`
	Hint        string `json:"hint,omitempty"`
	RTCPHint    string `json:"rtcp_hint,omitempty"`
	Latched     string `json:"latched,omitempty"`
	RTCPLatched string `json:"rtcp_latched,omitempty"`
	Symmetric   bool   `json:"symmetric"`
	ClockRate   uint32 `json:"clock_rate,omitempty"`
	RTCPMux     bool   `json:"rtcp_mux,omitempty"`
	// Relatch: an offer or answer moved the side since it last latched; it
	// is sent to its new SDP address until it sends from there.
	Relatch bool `json:"relatch,omitempty"`
	// Expect: the IPs the side may latch from (strict latching); absent in
	// states saved before it existed, which then learn as before.
	Expect []string `json:"expect,omitempty"`
	// NoSend and NoRecv: its latest SDP says it does not send, or is not
	// to be sent to (hold); absent in states saved before they existed.
	NoSend bool `json:"no_send,omitempty"`
	NoRecv bool `json:"no_recv,omitempty"`
	// TelephoneEvents: the payload types its SDP declared for RFC 4733
	// events.
	TelephoneEvents PayloadTypeList `json:"telephone_events,omitempty"`
}

// State snapshots a session for Restore.
func (s *Session) State() SessionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SessionState{Created: s.created, Answered: s.answered}
	for _, x := range s.streams {
		if x == nil {
			st.Streams = append(st.Streams, StreamState{Rejected: true})
			continue
		}
		ss := StreamState{Caller: x.a[0].state(x.a[1]), Callee: x.b[0].state(x.b[1])}
		for i, es := range []*EndpointState{&ss.Caller, &ss.Callee} {
			es.NoSend, es.NoRecv = x.flow[i]&flowSend == 0, x.flow[i]&flowRecv == 0
			es.TelephoneEvents = x.events[i].list()
		}
		st.Streams = append(st.Streams, ss)
	}
	return st
}

func (e *endpoint) state(rtcp *endpoint) EndpointState {
	es := EndpointState{Port: e.port, Symmetric: e.symmetric.Load(), RTCPMux: e.mux.Load(), Relatch: e.relatch.Load()}
	if h := e.hint.Load(); h != nil {
		es.Hint = h.String()
	}
	if a := e.sdp.Load(); a != nil {
		es.SDP = a.String()
	}
	if h := rtcp.hint.Load(); h != nil {
		es.RTCPHint = h.String()
	}
	if p := e.peer.Load(); p != nil {
		es.Latched = p.String()
	}
	if l := e.expect.Load(); l != nil {
		for _, a := range *l {
			es.Expect = append(es.Expect, a.String())
		}
	}
	if p := rtcp.peer.Load(); p != nil {
		es.RTCPLatched = p.String()
	}
	e.stats.mu.Lock()
	es.ClockRate = e.stats.d.clockRate
	e.stats.mu.Unlock()
	return es
}

// Restore rebuilds a session from its State on the very same ports. The
// restart counts as media activity, so the timers start afresh.
func (r *Relay) Restore(id string, st SessionState) (*Session, error) {
	s, err := r.Open(id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.streams) > 0 {
		return s, nil // already there
	}
	s.created, s.answered = st.Created, st.Answered
	now := time.Now().UnixNano()
	for _, x := range st.Streams {
		if x.Rejected {
			s.streams = append(s.streams, nil)
			continue
		}
		var eps [2][2]*endpoint
		for i, es := range []EndpointState{x.Caller, x.Callee} {
			rtp, rtcp, err := r.pool.allocExact(es.Port)
			if err != nil {
				s.closeEndpoints(eps[0][:]) // this stream's caller side, not in s.streams yet
				s.mu.Unlock()
				s.end(fmt.Errorf("restore: %w", err))
				s.mu.Lock()
				return nil, err
			}
			eps[i][0] = &endpoint{conn: rtp, port: es.Port, rtp: true, sess: s}
			eps[i][1] = &endpoint{conn: rtcp, port: es.Port + 1, sess: s}
			symmetric := es.Symmetric && r.cfg.Latch != LatchOff
			expect := parseAddrs(es.Expect)
			restoreEndpoint(eps[i][0], es.Hint, es.Latched, expect, symmetric, now)
			if a, err := netip.ParseAddrPort(es.SDP); err == nil {
				eps[i][0].sdp.Store(&a)
			}
			restoreEndpoint(eps[i][1], es.RTCPHint, es.RTCPLatched, expect, symmetric, now)
			eps[i][0].relatch.Store(es.Relatch)
			eps[i][1].relatch.Store(es.Relatch)
			eps[i][0].stats.d.clockRate = es.ClockRate
			eps[i][0].mux.Store(es.RTCPMux)
			eps[i][1].mux.Store(es.RTCPMux)
		}
		stream := &stream{a: eps[0], b: eps[1]}
		for i, es := range []EndpointState{x.Caller, x.Callee} {
			stream.flow[i] = flowSend | flowRecv
			if es.NoSend {
				stream.flow[i] &^= flowSend
			}
			if es.NoRecv {
				stream.flow[i] &^= flowRecv
			}
			stream.setEvents(Side(i+1), ptSetOf(es.TelephoneEvents...))
		}
		stream.link()
		for _, e := range stream.all() {
			go e.run()
		}
		s.streams = append(s.streams, stream)
	}
	s.expectFrom(time.Now())
	return s, nil
}

func restoreEndpoint(e *endpoint, hint, latched string, expect []netip.Addr, symmetric bool, now int64) {
	e.symmetric.Store(symmetric)
	e.expect.Store(&expect)
	if a, err := netip.ParseAddrPort(hint); err == nil {
		e.hint.Store(&a)
	}
	if a, err := netip.ParseAddrPort(latched); err == nil {
		e.peer.Store(&a)
	}
	e.lastIn.Store(now)
}

// parseAddrs reads saved IPs, skipping any that do not parse.
func parseAddrs(list []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range list {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}
