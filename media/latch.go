package media

import (
	"net/netip"
	"slices"
	"time"
)

// LatchMode says whose packets may fix (latch) where a side is sent to.
// RTP Bleed (CVE-2017-14114) is what it guards against: a relay that
// latches on the first packet from anyone sends a call's media to whoever
// sprays its ports before the phone's first packet, or after a re-offer.
type LatchMode uint8

const (
	// LatchUnknown is the zero value; the relay treats it as LatchStrict.
	LatchUnknown LatchMode = iota
	// LatchStrict latches only on packets from the IPs a side is expected
	// to send from (StreamInfo.Expect: its SIP source, a usable SDP
	// address). A latched side moves to a new port of its IP at any time
	// (NAT rebinding), to another expected IP only within the learning
	// window after its offer or answer (or when that moved it). Packets
	// from other IPs are dropped and counted as unexpected. A side whose
	// expected IPs are unknown is learnt as with LatchLearn.
	LatchStrict
	// LatchLearn latches on the first packet from anyone, and again on the
	// first after an offer or answer that moved the side; other sources
	// are dropped once latched (what sipanchor did before LatchStrict).
	LatchLearn
	// LatchOff never latches: each side is sent to its SDP address (or the
	// NAT-corrected target) and accepted from anywhere, as an asymmetric
	// leg is.
	LatchOff
)

func (m LatchMode) String() string {
	switch m {
	case LatchStrict:
		return "strict"
	case LatchLearn:
		return "learn"
	case LatchOff:
		return "off"
	}
	return "unknown"
}

// DefaultLatchWindow is how long after a side's offer or answer it may
// latch onto another of its expected IPs (strict mode).
const DefaultLatchWindow = 10 * time.Second

// expects reports whether a is one of the IPs this side may send from.
func expects(list *[]netip.Addr, a netip.Addr) bool {
	return list != nil && slices.Contains(*list, a)
}
