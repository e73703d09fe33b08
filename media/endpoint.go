package media

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
)

// endpoint is one relay socket facing one side of a stream: it receives
// that side's packets and sends the other side's packets to it. Its reader
// goroutine owns the buffer and is the only one to touch rtp stats; the
// signalling side only stores hints and flags (atomics), so packets never
// wait on a lock held by signalling.
type endpoint struct {
	conn    *net.UDPConn
	port    int
	rtp     bool // RTP socket (stats); false for RTCP
	other   *endpoint
	sibling *endpoint // the same side's RTCP socket for an RTP one, and back
	sess    *Session

	// mux: this side multiplexes RTCP on its RTP port (RFC 5761).
	mux atomic.Bool

	// peer is the latched source of this side; nil until the first packet.
	peer atomic.Pointer[netip.AddrPort]
	// hint is where to send before latching: the side's SDP address, or
	// what its user knew better (the SIP source of a UA behind NAT).
	hint atomic.Pointer[netip.AddrPort]
	// sdp is the address the side's SDP named, for diagnosis.
	sdp atomic.Pointer[netip.AddrPort]
	// relatch lets the next packet move peer (set by a new offer/answer that
	// changed this side's address).
	relatch   atomic.Bool
	symmetric atomic.Bool
	// expect lists the IPs this side may latch from (strict mode; nil or
	// empty = unknown); learnUntil (unix nanos) ends the window after its
	// latest offer or answer in which it may move to another of them.
	expect     atomic.Pointer[[]netip.Addr]
	learnUntil atomic.Int64

	pktsIn, bytesIn   atomic.Uint64
	pktsOut, bytesOut atomic.Uint64
	strangers         atomic.Uint64 // packets from a source other than the latched one
	unexpected        atomic.Uint64 // packets from an IP the side is not expected to send from
	unsent            atomic.Uint64 // packets with nowhere to go yet
	lastIn            atomic.Int64  // unix nanos of the last accepted packet
	stats             rtpStats
}

// target is where packets for this side go: the latched source when the
// side is symmetric and has sent, else its SDP address. After an offer or
// answer that moved the side, its new SDP address until it sends from
// there: the old address is where it was, not where it is.
func (e *endpoint) target() (netip.AddrPort, bool) {
	p := e.peer.Load()
	if e.symmetric.Load() && p != nil && !e.relatch.Load() {
		return *p, true
	}
	if h := e.hint.Load(); h != nil && h.Addr().IsValid() && !h.Addr().IsUnspecified() && h.Port() != 0 {
		return *h, true
	}
	if e.symmetric.Load() && p != nil {
		return *p, true // moved to an address we cannot use (hold): keep the latch
	}
	return netip.AddrPort{}, false
}

// run relays until the socket is closed.
func (e *endpoint) run() {
	buf := make([]byte, 2048)
	for {
		n, src, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable reported on a connected path
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if !e.accept(src) {
			continue
		}
		now := time.Now()
		e.lastIn.Store(now.UnixNano())
		e.pktsIn.Add(1)
		e.bytesIn.Add(uint64(n))
		if e.rtp {
			e.stats.update(buf[:n], now)
		}
		out := e.route(buf[:n])
		dst, ok := out.target()
		if !ok {
			e.unsent.Add(1)
			continue
		}
		if _, err := out.conn.WriteToUDPAddrPort(buf[:n], dst); err == nil {
			out.pktsOut.Add(1)
			out.bytesOut.Add(uint64(n))
		}
	}
}

// route picks the socket a packet leaves by. Normally the other side's
// socket of the same kind; when exactly one side multiplexes RTCP on its
// RTP port (RFC 5761), RTCP crosses between the RTP and RTCP sockets: from
// a muxing side's RTP port to the other's RTCP port, and back.
func (e *endpoint) route(b []byte) *endpoint {
	o := e.other
	if e.rtp && o.sibling != nil && isRTCP(b) && e.mux.Load() && !o.mux.Load() {
		return o.sibling // muxed RTCP to a side that wants it on RTP+1
	}
	if !e.rtp && o.sibling != nil && o.mux.Load() {
		return o.sibling // RTCP from RTP+1 to a side that wants it muxed
	}
	return o
}

// isRTCP tells RTCP from RTP on a multiplexed port (RFC 5761 §4): RTCP
// packet types 192..223 sit where RTP has its marker and payload type.
func isRTCP(b []byte) bool {
	return len(b) >= 2 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223
}

// accept applies symmetric latching (see LatchMode): it reports whether
// a packet from src is relayed, latching or re-latching on src when the
// mode allows, and counts what it drops. An asymmetric side sends to its
// SDP address and is accepted from anywhere.
func (e *endpoint) accept(src netip.AddrPort) bool {
	if !e.symmetric.Load() {
		return true
	}
	p := e.peer.Load()
	if p != nil && *p == src {
		return true
	}
	if !e.mayLatch(p, src) {
		return false
	}
	if e.peer.CompareAndSwap(p, &src) {
		e.relatch.Store(false)
		e.sess.latched(e, src, p)
	}
	return true
}

// mayLatch decides whether src may take the latch from p (nil: none yet),
// counting the packet as dropped when not.
func (e *endpoint) mayLatch(p *netip.AddrPort, src netip.AddrPort) bool {
	list := e.expect.Load()
	if e.sess.r.cfg.Latch != LatchStrict || list == nil || len(*list) == 0 {
		// learn, or strict with nothing known of the side's source.
		if p == nil || e.relatch.Load() {
			return true
		}
		e.strangers.Add(1)
		return false
	}
	switch {
	case !expects(list, src.Addr()):
		e.unexpected.Add(1)
		return false
	case p == nil, p.Addr() == src.Addr(): // first, or a NAT's new port
		return true
	case e.relatch.Load(), time.Now().UnixNano() < e.learnUntil.Load():
		return true // another expected IP, just after an offer or answer
	}
	e.strangers.Add(1)
	return false
}

// setHint records where a new SDP says to send to this side (sdp, and the
// target to use until it latches) and the IPs it may send from; when the
// target moved, the next packet may re-latch.
func (e *endpoint) setHint(sdp, a netip.AddrPort, expect []netip.Addr, symmetric bool) {
	e.symmetric.Store(symmetric)
	e.sdp.Store(&sdp)
	e.expect.Store(&expect)
	e.learnUntil.Store(time.Now().Add(e.sess.r.cfg.LatchWindow).UnixNano())
	old := e.hint.Swap(&a)
	if old != nil && *old != a && a.Addr().IsValid() && !a.Addr().IsUnspecified() {
		e.relatch.Store(true)
	}
}

// EndpointStats is what one relay socket saw of one side.
type EndpointStats struct {
	Port       int    `json:"port"`
	SDPAddr    string `json:"sdp_addr,omitempty"` // where this side's SDP says it is
	Target     string `json:"target,omitempty"`   // where we send before it latches
	Latched    string `json:"latched,omitempty"`  // where its packets really come from
	PacketsIn  uint64 `json:"packets_in"`         // from this side
	BytesIn    uint64 `json:"bytes_in"`           //
	PacketsOut uint64 `json:"packets_out"`        // to this side
	BytesOut   uint64 `json:"bytes_out"`          //
	Strangers  uint64 `json:"strangers"`          // dropped: from an unlatched source
	Unexpected uint64 `json:"unexpected"`         // dropped: from an IP this side is not expected to send from (strict latching)
	// ExpectedFrom lists the IPs this side may latch from (strict latching).
	ExpectedFrom []string  `json:"expected_from,omitempty"`
	Unsent       uint64    `json:"unsent"`              // dropped: the other side's address unknown
	Expected     int64     `json:"expected,omitempty"`  // RTP packets expected (RFC 3550 A.3)
	Lost         int64     `json:"lost,omitempty"`      // RTP packets lost
	JitterMS     float64   `json:"jitter_ms,omitempty"` // interarrival jitter (A.8)
	LastPacket   time.Time `json:"last_packet,omitzero"`
	// PayloadTypes lists the RTP payload types received from this side,
	// ascending (RTP sockets; RTCP multiplexed on them is left out).
	PayloadTypes PayloadTypeList `json:"payload_types,omitempty"`
	// DTMF is the RFC 4733 digits (0-9 * # A-D) received from this side,
	// oldest first, the last 64, on the telephone-event payload types its
	// or its peer's SDP declared.
	DTMF string `json:"dtmf,omitempty"`
	// MOS estimates the listening quality of this side's stream from its
	// loss and jitter, 1 to 4.5 to two decimals (see estimateMOS: the
	// E-model for G.711, without the network delay); 0 until it sent RTP.
	MOS float64 `json:"mos,omitempty"`
}

// PayloadTypeList is a list of RTP payload types. It is a JSON list of
// numbers, not the base64 string encoding/json makes of a []uint8.
type PayloadTypeList []uint8

// MarshalJSON writes l as a JSON array of numbers.
func (l PayloadTypeList) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 2+4*len(l))
	b = append(b, '[')
	for i, pt := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(pt), 10)
	}
	return append(b, ']'), nil
}

func (e *endpoint) snapshot() EndpointStats {
	s := EndpointStats{
		Port: e.port, PacketsIn: e.pktsIn.Load(), BytesIn: e.bytesIn.Load(),
		PacketsOut: e.pktsOut.Load(), BytesOut: e.bytesOut.Load(),
		Strangers: e.strangers.Load(), Unexpected: e.unexpected.Load(), Unsent: e.unsent.Load(),
	}
	if l := e.expect.Load(); l != nil {
		for _, a := range *l {
			s.ExpectedFrom = append(s.ExpectedFrom, a.String())
		}
	}
	if h := e.hint.Load(); h != nil {
		s.Target = h.String()
	}
	if a := e.sdp.Load(); a != nil {
		s.SDPAddr = a.String()
	}
	if p := e.peer.Load(); p != nil {
		s.Latched = p.String()
	}
	if t := e.lastIn.Load(); t != 0 {
		s.LastPacket = time.Unix(0, t)
	}
	if e.rtp {
		e.stats.fill(&s)
	}
	return s
}
