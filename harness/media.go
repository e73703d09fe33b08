package harness

import (
	"fmt"
	"slices"
	"strings"

	"sipanchor/relay"
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
	// PayloadTypes are the RTP payload types From sent, ascending.
	PayloadTypes []uint8
	// DTMF is the RFC 4733 digits From sent, in order.
	DTMF string
	// MOS is the relay's listening-quality estimate of From's stream
	// (G.107 E-model from loss and jitter, G.711 assumed), 1..4.5.
	MOS float64
}

func (f Flow) String() string {
	return fmt.Sprintf("%s → %s: %d received, %d relayed, %d lost, jitter %.1f ms, MOS %.2f, payload types %v, %d from strangers dropped",
		f.From, f.To, f.Received, f.Relayed, f.Lost, f.JitterMS, f.MOS, f.PayloadTypes, f.Strangers)
}

// Flows reads both directions now.
func (c *Call) Flows() (callerToCallee, calleeToCaller Flow) {
	up := Flow{From: "caller", To: "callee"}
	down := Flow{From: "callee", To: "caller"}
	for _, st := range c.Streams() {
		up.add(st.Caller, st.Callee)
		down.add(st.Callee, st.Caller)
	}
	return up, down
}

// add counts one stream: src is the relay socket facing From, dst the one
// facing To.
func (f *Flow) add(src, dst relay.EndpointStats) {
	f.Received += src.PacketsIn
	f.Relayed += dst.PacketsOut
	f.Strangers += src.Strangers + src.Unexpected
	f.Lost += src.Lost
	f.JitterMS = max(f.JitterMS, src.JitterMS)
	f.DTMF += src.DTMF
	for _, pt := range src.PayloadTypes {
		if !slices.Contains(f.PayloadTypes, pt) {
			f.PayloadTypes = append(f.PayloadTypes, pt)
		}
	}
	slices.Sort(f.PayloadTypes)
	if src.MOS > 0 && (f.MOS == 0 || src.MOS < f.MOS) { // the worst stream
		f.MOS = src.MOS
	}
	if f.Latched == "" {
		f.Latched, f.SDPAddr = src.Latched, src.SDPAddr
	}
}

// MediaExpect is what ExpectTwoWay and ExpectOneWay require.
type MediaExpect struct {
	// MinPackets is how many RTP packets must be relayed each way that
	// media is expected; default 50 (one second of 20 ms packets).
	MinPackets uint64
	// AllowStrangers accepts packets from strangers at the call's ports
	// (dropped by the relay); by default any is a failure.
	AllowStrangers bool
	// PayloadTypes, if set, are the only RTP payload types either side
	// may send (e.g. []uint8{0, 101}: PCMU and telephone-event).
	PayloadTypes []uint8
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
	c.checkPayloadTypes(e, callerToCallee, calleeToCaller)
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
	c.checkPayloadTypes(e, flowing)
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

func (c *Call) checkPayloadTypes(e MediaExpect, flows ...Flow) {
	c.s.t.Helper()
	if e.PayloadTypes == nil {
		return
	}
	for _, f := range flows {
		for _, pt := range f.PayloadTypes {
			if !slices.Contains(e.PayloadTypes, pt) {
				c.fatalf("%s sent payload type %d, want only %v:\n  %v", f.From, pt, e.PayloadTypes, f)
			}
		}
	}
}

// Quality bounds a direction's media quality; a zero field is no bound.
type Quality struct {
	MaxLoss     float64 // lost / (received + lost), e.g. 0.01 for 1 %
	MaxJitterMS float64
	MinMOS      float64 // e.g. 4.0
}

// ExpectQuality fails the test if either direction's loss, jitter or MOS
// (as the relay measured them) is outside q.
func (c *Call) ExpectQuality(q Quality) {
	c.s.t.Helper()
	up, down := c.Flows()
	for _, f := range []Flow{up, down} {
		var bad []string
		if total := float64(f.Received) + float64(max(f.Lost, 0)); q.MaxLoss > 0 && total > 0 && float64(f.Lost)/total > q.MaxLoss {
			bad = append(bad, fmt.Sprintf("loss %.1f %% > %.1f %%", 100*float64(f.Lost)/total, 100*q.MaxLoss))
		}
		if q.MaxJitterMS > 0 && f.JitterMS > q.MaxJitterMS {
			bad = append(bad, fmt.Sprintf("jitter %.1f ms > %.1f ms", f.JitterMS, q.MaxJitterMS))
		}
		if q.MinMOS > 0 && f.MOS < q.MinMOS {
			bad = append(bad, fmt.Sprintf("MOS %.2f < %.2f", f.MOS, q.MinMOS))
		}
		if len(bad) > 0 {
			c.fatalf("%s → %s: %s\n  %v", f.From, f.To, strings.Join(bad, ", "), f)
		}
	}
}

// ExpectDTMF waits until the relay has seen exactly digits (RFC 4733
// telephone-events) from "caller" or "callee", and fails if it sees
// others.
func (c *Call) ExpectDTMF(from, digits string) {
	c.s.t.Helper()
	var got string
	poll(c.s.opts.Wait, func() bool {
		up, down := c.Flows()
		got = up.DTMF
		if from == "callee" {
			got = down.DTMF
		}
		return len(got) >= len(digits)
	})
	if got != digits {
		c.fatalf("DTMF from the %s: got %q, want %q", from, got, digits)
	}
}
