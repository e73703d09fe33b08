package harness

import (
	"fmt"
	"strings"
)

// Flow is one direction of a call's media as the relay counted it, summed
// over the call's RTP streams (RTCP is not counted).
type Flow struct {
	From, To  string // "caller" or "callee"
	Received  uint64 // RTP packets the relay got from From
	Relayed   uint64 // RTP packets the relay sent on to To
	Strangers uint64 // packets to From's relay port from a source that is not From, dropped
	Lost      int64  // RTP packets of From's stream that never arrived (RFC 3550 A.3)
	JitterMS  float64
	Latched   string // where From's packets come from (its NAT's public side)
	SDPAddr   string // where From's SDP said it would be
}

func (f Flow) String() string {
	return fmt.Sprintf("%s → %s: %d received, %d relayed, %d lost, jitter %.1f ms, %d from strangers dropped",
		f.From, f.To, f.Received, f.Relayed, f.Lost, f.JitterMS, f.Strangers)
}

// Flows reads both directions now.
func (c *Call) Flows() (callerToCallee, calleeToCaller Flow) {
	up := Flow{From: "caller", To: "callee"}
	down := Flow{From: "callee", To: "caller"}
	for _, st := range c.Streams() {
		up.Received += st.Caller.PacketsIn
		up.Relayed += st.Callee.PacketsOut
		up.Strangers += st.Caller.Strangers + st.Caller.Unexpected
		up.Lost += st.Caller.Lost
		up.JitterMS = max(up.JitterMS, st.Caller.JitterMS)
		down.Received += st.Callee.PacketsIn
		down.Relayed += st.Caller.PacketsOut
		down.Strangers += st.Callee.Strangers + st.Callee.Unexpected
		down.Lost += st.Callee.Lost
		down.JitterMS = max(down.JitterMS, st.Callee.JitterMS)
		if up.Latched == "" {
			up.Latched, up.SDPAddr = st.Caller.Latched, st.Caller.SDPAddr
			down.Latched, down.SDPAddr = st.Callee.Latched, st.Callee.SDPAddr
		}
	}
	return up, down
}

// MediaExpect is what ExpectTwoWay and ExpectOneWay require.
type MediaExpect struct {
	// MinPackets is how many RTP packets must be relayed each way that
	// media is expected; default 50 (one second of 20 ms packets).
	MinPackets uint64
	// AllowStrangers accepts packets from strangers at the call's ports
	// (dropped by the relay); by default any is a failure.
	AllowStrangers bool
}

func (e MediaExpect) min() uint64 {
	if e.MinPackets == 0 {
		return 50
	}
	return e.MinPackets
}

// ExpectTwoWay waits until the relay has relayed at least MinPackets RTP
// packets each way, and fails the test with the relay's diagnosis if that
// does not happen in time or strangers sent to the call's ports.
func (c *Call) ExpectTwoWay(e MediaExpect) (callerToCallee, calleeToCaller Flow) {
	c.s.t.Helper()
	if !c.Anchored() {
		c.fatalf("media is not anchored (engage = %q): the relay cannot see it; assert at the user agents", c.s.opts.Engage)
	}
	ok := poll(c.s.opts.Wait, func() bool {
		callerToCallee, calleeToCaller = c.Flows()
		return callerToCallee.Relayed >= e.min() && calleeToCaller.Relayed >= e.min()
	})
	if !ok {
		c.fatalf("want two-way media, ≥ %d packets relayed each way within %v; got\n  %v\n  %v", e.min(), c.s.opts.Wait, callerToCallee, calleeToCaller)
	}
	c.checkStrangers(e, callerToCallee, calleeToCaller)
	return callerToCallee, calleeToCaller
}

// ExpectOneWay waits until media from "caller" or "callee" has been
// relayed (≥ MinPackets) while the other way has none, and returns the
// relay's diagnosis, which says in plain words which side is silent: the
// shape of one-way audio.
func (c *Call) ExpectOneWay(from string, e MediaExpect) []string {
	c.s.t.Helper()
	if from != "caller" && from != "callee" {
		c.s.t.Fatalf("harness: ExpectOneWay(%q): want \"caller\" or \"callee\"", from)
	}
	var flowing, silent Flow
	ok := poll(c.s.opts.Wait, func() bool {
		up, down := c.Flows()
		flowing, silent = up, down
		if from == "callee" {
			flowing, silent = down, up
		}
		return flowing.Relayed >= e.min()
	})
	if !ok || silent.Received > 0 {
		c.fatalf("want one-way media from the %s only; got\n  %v\n  %v", from, flowing, silent)
	}
	c.checkStrangers(e, flowing, silent)
	return c.Diagnosis()
}

func (c *Call) checkStrangers(e MediaExpect, flows ...Flow) {
	c.s.t.Helper()
	if e.AllowStrangers {
		return
	}
	var bad []string
	for _, f := range flows {
		if f.Strangers > 0 {
			bad = append(bad, f.String())
		}
	}
	if len(bad) > 0 {
		c.fatalf("packets from strangers at the call's relay ports:\n  %s", strings.Join(bad, "\n  "))
	}
}
