package media

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

var testPortBase atomic.Int32

// newTestRelay gives each test its own slice of the port range.
func newTestRelay(t *testing.T, pairs int, mod func(*Config)) *Relay {
	t.Helper()
	base := 42000 + int(testPortBase.Add(int32(pairs*2+2)))*1
	cfg := Config{PortMin: base - base%2, PortMax: base - base%2 + pairs*2 - 1, Bind: netip.MustParseAddr("127.0.0.1"),
		Advertise: netip.MustParseAddr("127.0.0.1"), SetupTimeout: time.Minute, SessionTimeout: time.Minute}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func udp(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rtpPacket(t *testing.T, seq uint16, payload byte) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 0x1234}, Payload: make([]byte, 160)}
	p.Payload[0] = payload
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func send(t *testing.T, c *net.UDPConn, port int, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))); err != nil {
		t.Fatal(err)
	}
}

// expect reads one packet and checks it is the RTP packet with seq.
func expect(t *testing.T, c *net.UDPConn, seq uint16, fromPort int) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no packet %d: %v", seq, err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(buf[:n]); err != nil || p.SequenceNumber != seq {
		t.Fatalf("got seq %d (%v), want %d", p.SequenceNumber, err, seq)
	}
	if int(src.Port()) != fromPort {
		t.Errorf("packet came from relay port %d, want %d", src.Port(), fromPort)
	}
}

func silent(t *testing.T, c *net.UDPConn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	if n, _, err := c.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
		t.Fatalf("unexpected %d-byte packet", n)
	}
}

// waitLatched waits until a side's RTP source is learnt: each side's
// packets are read by its own goroutine, so a test that sends from both
// sides back to back must let the first latch before the second is relayed.
func waitLatched(t *testing.T, s *Session, caller bool) {
	t.Helper()
	eventually(t, time.Second, func() bool {
		st := s.Stats().Streams[0]
		return (caller && st.Caller.Latched != "") || (!caller && st.Callee.Latched != "")
	}, "side never latched (caller %v)", caller)
}

// talking gives a call two UAs that have each sent once, the caller
// first, so both sides are latched and relaying both ways.
func talking(t *testing.T, s *Session, portA, portB int) (caller, callee *net.UDPConn) {
	t.Helper()
	caller, callee = udp(t, "127.0.0.2"), udp(t, "127.0.0.3")
	send(t, caller, portA, rtpPacket(t, 1, 'a'))
	waitLatched(t, s, true)
	send(t, callee, portB, rtpPacket(t, 1, 'b'))
	expect(t, caller, 1, portA)
	return caller, callee
}

func audio(addr string, port int) *SDPInfo {
	return &SDPInfo{Streams: []StreamInfo{{Media: "audio", Port: port, RTCPPort: port + 1, Addr: netip.MustParseAddr(addr), ClockRate: 8000}}}
}

// call sets up a session whose two sides are behind NAT: their SDP names
// private addresses, their packets come from loopback sockets.
func call(t *testing.T, r *Relay) (s *Session, portA, portB int) {
	t.Helper()
	s, err := r.Open("call-1")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := s.Apply(SideA, audio("127.0.0.250", 4000), true, false)
	if err != nil {
		t.Fatal(err)
	}
	pa, err := s.Apply(SideB, audio("127.0.0.251", 5000), true, true)
	if err != nil {
		t.Fatal(err)
	}
	s.MarkAnswered()
	if pa[0] == pb[0] || pa[0]%2 != 0 || pb[0]%2 != 0 {
		t.Fatalf("ports %d/%d: want two distinct even ports", pa[0], pb[0])
	}
	return s, pa[0], pb[0]
}

func TestRelayBothWaysWithLatching(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	s, portA, portB := call(t, r)
	caller, callee := udp(t, "127.0.0.2"), udp(t, "127.0.0.3")

	// The caller speaks first: its source is latched. Toward the callee the
	// relay can only use the SDP hint (a private address), so nothing arrives.
	send(t, caller, portA, rtpPacket(t, 1, 'a'))
	silent(t, callee, 200*time.Millisecond)
	// The callee speaks: latched, and forwarded to the caller's real source.
	send(t, callee, portB, rtpPacket(t, 100, 'b'))
	expect(t, caller, 100, portA)
	// Now the caller's packets reach the callee's real source.
	send(t, caller, portA, rtpPacket(t, 2, 'a'))
	expect(t, callee, 2, portB)

	// A stranger cannot take over either side.
	stranger := udp(t, "127.0.0.9")
	for i := range 3 {
		send(t, stranger, portA, rtpPacket(t, uint16(50+i), 'x'))
	}
	silent(t, callee, 200*time.Millisecond)
	send(t, callee, portB, rtpPacket(t, 101, 'b'))
	expect(t, caller, 101, portA) // still to the caller, not the stranger

	// Counters are bumped after each send returns, so a packet can be
	// read here a moment before it is counted: wait for them to settle.
	var st StreamStats
	eventually(t, time.Second, func() bool {
		st = s.Stats().Streams[0]
		return st.Caller.PacketsOut == 2 && st.Callee.PacketsOut == 2
	}, "packets out never reached 2 each: %+v", &st)
	if st.Caller.Strangers != 3 {
		t.Errorf("strangers = %d, want 3", st.Caller.Strangers)
	}
	if st.Caller.PacketsIn != 2 || st.Callee.PacketsIn != 2 || st.Caller.PacketsOut != 2 || st.Callee.PacketsOut != 2 { // the first to the callee went to its SDP address
		t.Errorf("counters: %+v / %+v", st.Caller, st.Callee)
	}
	if st.Caller.Latched != caller.LocalAddr().String() || st.Caller.SDPAddr != "127.0.0.250:4000" || st.Caller.Target != "127.0.0.250:4000" {
		t.Errorf("caller latched %q sdp %q", st.Caller.Latched, st.Caller.SDPAddr)
	}
	if st.Callee.Lost != 0 || st.Callee.Expected != 2 {
		t.Errorf("callee stats expected %d lost %d", st.Callee.Expected, st.Callee.Lost)
	}
}

func TestRelatchAfterNewOffer(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	s, portA, portB := call(t, r)
	caller, callee := talking(t, s, portA, portB)

	// The caller moves to a new socket and says so in a re-INVITE.
	moved := udp(t, "127.0.0.4")
	send(t, moved, portA, rtpPacket(t, 2, 'a'))
	silent(t, callee, 150*time.Millisecond) // before the offer: a stranger
	if _, err := s.Apply(SideA, audio("127.0.0.250", 4002), true, false); err != nil {
		t.Fatal(err)
	}
	send(t, moved, portA, rtpPacket(t, 3, 'a'))
	expect(t, callee, 3, portB)
	send(t, callee, portB, rtpPacket(t, 2, 'b'))
	expect(t, moved, 2, portA)
	// The same offer again (a session refresh) does not reopen latching.
	if _, err := s.Apply(SideA, audio("127.0.0.250", 4002), true, false); err != nil {
		t.Fatal(err)
	}
	send(t, caller, portA, rtpPacket(t, 9, 'a'))
	silent(t, callee, 150*time.Millisecond)
}

func TestAsymmetricSendsToSDPAddress(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	s, _ := r.Open("asym")
	callee := udp(t, "127.0.0.3")
	caller := udp(t, "127.0.0.2")
	pb, _ := s.Apply(SideA, audio("127.0.0.2", caller.LocalAddr().(*net.UDPAddr).Port), true, false)
	cp := callee.LocalAddr().(*net.UDPAddr).Port
	pa, _ := s.Apply(SideB, audio("127.0.0.3", cp), false, true)
	// The callee never sends, yet the caller's packets reach its SDP address.
	send(t, caller, pa[0], rtpPacket(t, 7, 'a'))
	expect(t, callee, 7, pb[0])
}

func TestDeleteStopsForwardingAndFreesPorts(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	s, portA, portB := call(t, r)
	caller, callee := talking(t, s, portA, portB)
	send(t, caller, portA, rtpPacket(t, 1, 'a'))
	expect(t, callee, 1, portB) // forwarding before the delete
	if _, err := r.Delete("call-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed")
	}
	if !errors.Is(s.Err(), ErrDeleted) {
		t.Errorf("Err = %v", s.Err())
	}
	send(t, caller, portA, rtpPacket(t, 2, 'a'))
	silent(t, callee, 200*time.Millisecond)
	if used, _ := r.PortPairs(); used != 0 || r.Count() != 0 {
		t.Errorf("after delete: %d port pairs, %d sessions", used, r.Count())
	}
	if _, err := r.Delete("call-1"); !errors.Is(err, ErrNoSession) {
		t.Errorf("second delete: %v", err)
	}
}

func TestPortExhaustion(t *testing.T) {
	r := newTestRelay(t, 4, nil) // 4 pairs = 2 streams
	for _, id := range []string{"a", "b"} {
		s, _ := r.Open(id)
		if _, err := s.Apply(SideA, audio("127.0.0.250", 4000), true, false); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := r.Open("c")
	if _, err := s.Apply(SideA, audio("127.0.0.250", 4000), true, false); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("third call: %v, want ErrNoPorts", err)
	}
	r.Delete("c")
	r.Delete("a")
	s, _ = r.Open("d")
	if _, err := s.Apply(SideA, audio("127.0.0.250", 4000), true, false); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
	if used, total := r.PortPairs(); used != 4 || total != 4 {
		t.Errorf("pairs %d/%d", used, total)
	}
}

func TestTimeouts(t *testing.T) {
	tests := []struct {
		name   string
		media  bool // send media after the answer, then stop
		answer bool
	}{
		{"no media since answer", false, true},
		{"media stopped", true, true},
		{"never answered", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRelay(t, 4, func(c *Config) {
				c.SetupTimeout, c.SessionTimeout, c.RingTimeout = time.Second, time.Second, time.Second
			})
			s, err := r.Open("t")
			if err != nil {
				t.Fatal(err)
			}
			pb, err := s.Apply(SideA, audio("127.0.0.250", 4000), true, false)
			if err != nil {
				t.Fatal(err)
			}
			if tt.answer {
				pa, err := s.Apply(SideB, audio("127.0.0.251", 4000), true, true)
				if err != nil {
					t.Fatal(err)
				}
				s.MarkAnswered()
				if tt.media {
					c := udp(t, "127.0.0.2")
					send(t, c, pa[0], rtpPacket(t, 1, 'a'))
				}
			}
			_ = pb
			start := time.Now()
			select {
			case <-s.Done():
			case <-time.After(4 * time.Second):
				t.Fatal("session did not time out")
			}
			if !errors.Is(s.Err(), ErrMediaTimeout) {
				t.Errorf("Err = %v", s.Err())
			}
			if el := time.Since(start); el > 2500*time.Millisecond {
				t.Errorf("timed out after %v, want within timeout + 1 s", el)
			}
			if used, _ := r.PortPairs(); used != 0 {
				t.Errorf("%d pairs still used", used)
			}
		})
	}
}

func TestRTPStatsLoss(t *testing.T) {
	var s rtpStats
	s.setClockRate(8000)
	now := time.Now()
	for i, seq := range []uint16{65533, 65534, 65535, 0, 3, 4} { // wraps; 1 and 2 lost
		p := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(i) * 160, SSRC: 9}}
		b, _ := p.Marshal()
		s.update(b, now.Add(time.Duration(i)*20*time.Millisecond))
	}
	exp, lost, jit := s.snapshot()
	if exp != 8 || lost != 2 {
		t.Errorf("expected %d lost %d, want 8 and 2", exp, lost)
	}
	if jit < 0 || jit > 1 {
		t.Errorf("jitter %.3f ms on a perfectly paced stream", jit)
	}
	s.update([]byte{0x80, 200, 0, 1}, now) // RTCP-sized junk: ignored
	if e, _, _ := s.snapshot(); e != 8 {
		t.Errorf("junk counted: expected %d", e)
	}
}

func TestRestoreKeepsPortsAndLatches(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	s, portA, portB := call(t, r)
	caller, callee := talking(t, s, portA, portB)
	st := s.State()
	r.Close() // the process stops

	r2, err := NewRelay(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	s2, err := r2.Restore("call-1", st)
	if err != nil {
		t.Fatal(err)
	}
	// Both sides keep sending where they did, and are reached where they were.
	send(t, callee, portB, rtpPacket(t, 2, 'b'))
	expect(t, caller, 2, portA)
	send(t, caller, portA, rtpPacket(t, 2, 'a'))
	expect(t, callee, 2, portB)
	if used, _ := r2.PortPairs(); used != 2 {
		t.Errorf("%d pairs after restore, want 2", used)
	}
	if got := s2.State(); len(got.Streams) != 1 || got.Streams[0].Caller.Port != portA || got.Streams[0].Callee.Port != portB {
		t.Errorf("restored state %+v", got)
	}
}

// TestRestoreFailureFreesPorts: a saved state whose callee port cannot be
// had (outside the range, or taken) fails to restore and holds nothing,
// not even the caller's ports already opened for it.
func TestRestoreFailureFreesPorts(t *testing.T) {
	for _, name := range []string{"outside the range", "taken by the caller"} {
		r := newTestRelay(t, 4, nil)
		callee := 1
		if name == "taken by the caller" {
			callee = r.cfg.PortMin
		}
		st := SessionState{Streams: []StreamState{{Caller: EndpointState{Port: r.cfg.PortMin}, Callee: EndpointState{Port: callee}}}}
		if _, err := r.Restore("broken", st); err == nil {
			t.Fatalf("%s: restored", name)
		}
		if used, _ := r.PortPairs(); used != 0 || r.Count() != 0 {
			t.Errorf("%s: %d pairs and %d sessions held after a failed restore", name, used, r.Count())
		}
	}
}

func TestRTCPDemux(t *testing.T) {
	r := newTestRelay(t, 4, nil)
	s, _ := r.Open("mux")
	callerRTP := udp(t, "127.0.0.2") // the caller muxes RTCP on its RTP port
	calleeRTP, calleeRTCP := udp(t, "127.0.0.3"), udp(t, "127.0.0.3")
	ci := audio("127.0.0.2", callerRTP.LocalAddr().(*net.UDPAddr).Port)
	ci.Streams[0].RTCPMux = true
	pb, _ := s.Apply(SideA, ci, true, false)
	ce := audio("127.0.0.3", calleeRTP.LocalAddr().(*net.UDPAddr).Port)
	ce.Streams[0].RTCPPort = calleeRTCP.LocalAddr().(*net.UDPAddr).Port
	pa, _ := s.Apply(SideB, ce, true, true)

	rtcp := []byte{0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // SR
	read := func(c *net.UDPConn) []byte {
		t.Helper()
		buf := make([]byte, 2048)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("nothing on %s: %v", c.LocalAddr(), err)
		}
		return buf[:n]
	}
	// Muxed RTCP from the caller reaches the callee's RTCP port ...
	send(t, callerRTP, pa[0], rtcp)
	if b := read(calleeRTCP); len(b) != len(rtcp) || b[1] != 200 {
		t.Errorf("callee's RTCP port got %x", b)
	}
	// ... RTP still reaches its RTP port ...
	send(t, callerRTP, pa[0], rtpPacket(t, 1, 'a'))
	expect(t, calleeRTP, 1, pb[0])
	// ... and the callee's RTCP from RTP+1 reaches the caller's RTP port.
	send(t, calleeRTCP, pb[0]+1, rtcp)
	if b := read(callerRTP); len(b) != len(rtcp) || b[1] != 200 {
		t.Errorf("caller's RTP port got %x", b)
	}
}
