package media

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// phones is a call between two UAs whose SDP names their real sockets
// (caller on 127.0.0.2, callee on 127.0.0.3) and whose relay user says
// they send from those IPs (their SIP source), and an attacker on
// 127.0.0.66 who knows the relay's ports.
type phones struct {
	s                        *Session
	portA, portB             int // relay ports facing the caller, the callee
	caller, callee, attacker *net.UDPConn
}

func portOf(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

func sdpOf(c *net.UDPConn, expect ...string) *SDPInfo {
	a := c.LocalAddr().(*net.UDPAddr)
	info := audio(a.IP.String(), a.Port)
	for _, e := range expect {
		info.Streams[0].Expect = append(info.Streams[0].Expect, netip.MustParseAddr(e))
	}
	return info
}

func newPhones(t *testing.T, r *Relay) *phones {
	t.Helper()
	p := &phones{caller: udp(t, "127.0.0.2"), callee: udp(t, "127.0.0.3"), attacker: udp(t, "127.0.0.66")}
	var err error
	if p.s, err = r.Open("bleed"); err != nil {
		t.Fatal(err)
	}
	pb, err := p.s.Apply(SideA, sdpOf(p.caller, "127.0.0.2"), true, false)
	if err != nil {
		t.Fatal(err)
	}
	pa, err := p.s.Apply(SideB, sdpOf(p.callee, "127.0.0.3"), true, true)
	if err != nil {
		t.Fatal(err)
	}
	p.portA, p.portB = pa[0], pb[0]
	return p
}

// spray sends n packets from the attacker to every relay port of the
// call: both sides, RTP and RTCP.
func (p *phones) spray(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		for _, port := range []int{p.portA, p.portA + 1, p.portB, p.portB + 1} {
			send(t, p.attacker, port, rtpPacket(t, uint16(900+i), 'x'))
		}
	}
}

// counted waits until the call's sockets have taken n packets in all
// (relayed or dropped), so what a spray did is done.
func (p *phones) counted(t *testing.T, n uint64) {
	t.Helper()
	var c struct{ In, Strangers, Unexpected uint64 }
	eventually(t, 2*time.Second, func() bool {
		c.In, c.Strangers, c.Unexpected = 0, 0, 0
		for _, x := range p.s.Stats().Streams {
			for _, e := range []EndpointStats{x.Caller, x.Callee, x.CallerRTCP, x.CalleeRTCP} {
				c.In += e.PacketsIn
				c.Strangers += e.Strangers
				c.Unexpected += e.Unexpected
			}
		}
		return c.In+c.Strangers+c.Unexpected >= n
	}, "packets taken in: %+v, want %d", &c, n)
}

// unexpected waits until the call's counters show n packets dropped as
// from an unexpected source.
func (p *phones) unexpected(t *testing.T, n uint64) {
	t.Helper()
	var c struct{ Unexpected uint64 }
	eventually(t, 2*time.Second, func() bool {
		c.Unexpected = 0
		for _, x := range p.s.Stats().Streams {
			c.Unexpected += x.Caller.Unexpected + x.Callee.Unexpected + x.CallerRTCP.Unexpected + x.CalleeRTCP.Unexpected
		}
		return c.Unexpected == n
	}, "dropped as unexpected: %+v, want %d", &c, n)
}

// A stranger's packets before the UAs' first packets do not latch: the
// media of both UAs still goes to them, and the stranger gets nothing.
func TestStrictStrangerBeforeFirstPacket(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	p := newPhones(t, r)
	p.spray(t, 3)
	p.counted(t, 12)

	send(t, p.callee, p.portB, rtpPacket(t, 1, 'b'))
	expect(t, p.caller, 1, p.portA)
	send(t, p.caller, p.portA, rtpPacket(t, 1, 'a'))
	expect(t, p.callee, 1, p.portB)
	silent(t, p.attacker, 100*time.Millisecond)
	p.unexpected(t, 12)
	st := p.s.Stats().Streams[0]
	if st.Caller.Latched != p.caller.LocalAddr().String() || st.Callee.Latched != p.callee.LocalAddr().String() {
		t.Errorf("latched caller %s callee %s, want the UAs", st.Caller.Latched, st.Callee.Latched)
	}
}

// After the UAs latched, the stranger's packets are dropped as unexpected
// and it still gets nothing.
func TestStrictStrangerAfterLatch(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	p := newPhones(t, r)
	send(t, p.caller, p.portA, rtpPacket(t, 1, 'a'))
	expect(t, p.callee, 1, p.portB)
	send(t, p.callee, p.portB, rtpPacket(t, 1, 'b'))
	expect(t, p.caller, 1, p.portA)
	p.spray(t, 2)
	p.counted(t, 10)
	send(t, p.callee, p.portB, rtpPacket(t, 2, 'b'))
	expect(t, p.caller, 2, p.portA)
	send(t, p.caller, p.portA, rtpPacket(t, 2, 'a'))
	expect(t, p.callee, 2, p.portB)
	silent(t, p.attacker, 100*time.Millisecond)
	p.unexpected(t, 8)
}

// A latched UA whose NAT gives it a new port (same IP) is followed there.
func TestStrictPortChangeRelatches(t *testing.T) {
	r := newTestRelay(t, 4, func(c *Config) { c.LatchWindow = time.Nanosecond })
	p := newPhones(t, r)
	send(t, p.caller, p.portA, rtpPacket(t, 1, 'a'))
	expect(t, p.callee, 1, p.portB)
	rebound := udp(t, "127.0.0.2")
	send(t, rebound, p.portA, rtpPacket(t, 2, 'a'))
	expect(t, p.callee, 2, p.portB)
	send(t, p.callee, p.portB, rtpPacket(t, 1, 'b'))
	expect(t, rebound, 1, p.portA)
}

// After a re-offer that moves the caller, an unknown IP cannot take its
// place: the caller is sent to at its new SDP address until it sends.
func TestStrictReofferNoHijack(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	p := newPhones(t, r)
	send(t, p.caller, p.portA, rtpPacket(t, 1, 'a'))
	expect(t, p.callee, 1, p.portB)
	moved := udp(t, "127.0.0.2")
	if _, err := p.s.Apply(SideA, sdpOf(moved, "127.0.0.2"), true, false); err != nil {
		t.Fatal(err)
	}
	p.spray(t, 2)
	p.counted(t, 9)
	send(t, p.callee, p.portB, rtpPacket(t, 2, 'b'))
	expect(t, moved, 2, p.portA)
	silent(t, p.attacker, 100*time.Millisecond)
	send(t, moved, p.portA, rtpPacket(t, 3, 'a'))
	expect(t, p.callee, 3, p.portB)
	p.unexpected(t, 8)
}

// Within the window after its offer a side may move to another of its
// expected IPs; after it, it stays latched and the other IP is a stranger.
func TestStrictWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		moves  bool
	}{{"within", time.Hour, true}, {"after", time.Nanosecond, false}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRelay(t, 4, func(c *Config) { c.LatchWindow = tc.window })
			s, _ := r.Open("w")
			caller, media2, callee := udp(t, "127.0.0.2"), udp(t, "127.0.0.5"), udp(t, "127.0.0.3")
			pb, _ := s.Apply(SideA, sdpOf(caller, "127.0.0.2", "127.0.0.5"), true, false)
			pa, _ := s.Apply(SideB, sdpOf(callee, "127.0.0.3"), true, true)
			send(t, caller, pa[0], rtpPacket(t, 1, 'a'))
			expect(t, callee, 1, pb[0])
			send(t, media2, pa[0], rtpPacket(t, 2, 'a'))
			if tc.moves {
				expect(t, callee, 2, pb[0])
				send(t, callee, pb[0], rtpPacket(t, 1, 'b'))
				expect(t, media2, 1, pa[0])
				return
			}
			silent(t, callee, 100*time.Millisecond)
			eventually(t, time.Second, func() bool { return s.Stats().Streams[0].Caller.Strangers == 1 }, "stranger not counted")
			send(t, callee, pb[0], rtpPacket(t, 1, 'b'))
			expect(t, caller, 1, pa[0])
		})
	}
}

// An unlatched side keeps accepting only its expected IPs after the
// window, and then latches on them.
func TestStrictUnlatchedAfterWindow(t *testing.T) {
	r := newTestRelay(t, 4, func(c *Config) { c.LatchWindow = time.Nanosecond })
	p := newPhones(t, r)
	p.spray(t, 1)
	p.counted(t, 4)
	send(t, p.caller, p.portA, rtpPacket(t, 1, 'a'))
	expect(t, p.callee, 1, p.portB)
	send(t, p.callee, p.portB, rtpPacket(t, 1, 'b'))
	expect(t, p.caller, 1, p.portA)
	silent(t, p.attacker, 100*time.Millisecond)
	p.unexpected(t, 4)
}

// learn: the first packet from anyone latches (the attacker wins if it is
// first: what strict prevents), then the source is locked.
func TestLearnMode(t *testing.T) {
	r := newTestRelay(t, 4, func(c *Config) { c.Latch = LatchLearn })
	p := newPhones(t, r)
	send(t, p.attacker, p.portA, rtpPacket(t, 1, 'x'))
	eventually(t, time.Second, func() bool { return p.s.Stats().Streams[0].Caller.Latched != "" }, "attacker not latched")
	send(t, p.caller, p.portA, rtpPacket(t, 1, 'a'))
	send(t, p.callee, p.portB, rtpPacket(t, 1, 'b'))
	expect(t, p.attacker, 1, p.portA)
	eventually(t, time.Second, func() bool { return p.s.Stats().Streams[0].Caller.Strangers == 1 }, "caller's packet not counted as a stranger")
}

// off: nothing latches; each side is sent to its SDP address whoever sends.
func TestOffMode(t *testing.T) {
	r := newTestRelay(t, 4, func(c *Config) { c.Latch = LatchOff })
	p := newPhones(t, r)
	send(t, p.attacker, p.portA, rtpPacket(t, 1, 'x'))
	expect(t, p.callee, 1, p.portB) // accepted from anyone
	rebound := udp(t, "127.0.0.2")
	send(t, rebound, p.portA, rtpPacket(t, 2, 'a'))
	expect(t, p.callee, 2, p.portB)
	send(t, p.callee, p.portB, rtpPacket(t, 1, 'b'))
	expect(t, p.caller, 1, p.portA) // to its SDP address, not where packets came from
	silent(t, p.attacker, 100*time.Millisecond)
	if st := p.s.Stats().Streams[0]; st.Caller.Latched != "" {
		t.Errorf("latched %s with latch off", st.Caller.Latched)
	}
}

// A restored session keeps what it expects: an attacker spraying the
// restored ports of an unlatched side still gets nothing.
func TestStrictSurvivesRestore(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	p := newPhones(t, r)
	st := p.s.State()
	r.Close()
	r2, err := NewRelay(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if p.s, err = r2.Restore("bleed", st); err != nil {
		t.Fatal(err)
	}
	p.spray(t, 1)
	p.counted(t, 4)
	send(t, p.callee, p.portB, rtpPacket(t, 1, 'b'))
	expect(t, p.caller, 1, p.portA)
	silent(t, p.attacker, 100*time.Millisecond)
	p.unexpected(t, 4)
}
