package ua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// MediaStats is what a call's RTP socket(s) received.
type MediaStats struct {
	// Packets counts the RTP packets received.
	Packets int
	// Echoes counts received packets carrying the call's own SSRC: its own
	// packets, sent back (e.g. by SIPp -rtp_echo).
	Echoes int
	// PayloadTypes counts packets per RTP payload type.
	PayloadTypes map[uint8]int
	// Sources counts packets per source address.
	Sources map[netip.AddrPort]int
	// Last is when the last packet came.
	Last time.Time
	// Digits are the RFC 4733 events received, one per event (its end).
	Digits string
}

// endpoint is a call's RTP/RTCP socket pair on Local, and the socket RTP
// leaves from (the RTP one, unless Faults.AsymmetricRTP).
type endpoint struct {
	rtp, rtcp, send *net.UDPConn
	public          netip.AddrPort // what the SDP names: STUN's mapping, or rtp's address
}

func (e *endpoint) close() {
	e.rtp.Close()
	e.rtcp.Close()
	if e.send != e.rtp {
		e.send.Close()
	}
}

// newEndpoint binds an even/odd port pair on Local, learns the RTP
// socket's public mapping when Config.STUN is set, and opens the second
// sending socket of Faults.AsymmetricRTP.
func (u *UA) newEndpoint(ctx context.Context) (*endpoint, error) {
	ep, err := bindPair(u.cfg.Local)
	if err != nil {
		return nil, err
	}
	ep.send = ep.rtp
	ep.public = unmap(ep.rtp.LocalAddr().(*net.UDPAddr).AddrPort())
	if u.cfg.STUN.IsValid() {
		if ep.public, err = stunMapping(ctx, ep.rtp, u.cfg.STUN, u.cfg.OnlyFrom); err != nil {
			ep.close()
			return nil, err
		}
	}
	if u.cfg.Faults.AsymmetricRTP {
		if ep.send, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(u.cfg.Local, 0))); err != nil {
			ep.send = ep.rtp
			ep.close()
			return nil, err
		}
	}
	return ep, nil
}

// bindPair binds RTP on an even port and RTCP on the next one.
func bindPair(ip netip.Addr) (*endpoint, error) {
	for range 50 {
		r, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			return nil, err
		}
		p := r.LocalAddr().(*net.UDPAddr).Port
		if p%2 == 0 && p < 65535 {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p+1))))
			if err == nil {
				return &endpoint{rtp: r, rtcp: c}, nil
			}
		}
		r.Close()
	}
	return nil, errors.New("no free RTP/RTCP port pair")
}

// media is a call's RTP stream: the sockets, where to send, what came.
type media struct {
	u    *UA
	log  *slog.Logger
	ssrc uint32

	ep      atomic.Pointer[endpoint]
	remote  atomic.Pointer[remoteMedia]
	ourDir  atomic.Pointer[string]
	eventPT atomic.Int32 // payload type of telephone-event packets to us

	t0       time.Time // the RTP clock (8 kHz) reads tsBase at t0
	tsBase   uint32
	out      sync.Mutex // the outgoing stream's sequence
	seq      uint16
	sent     int
	stopSend chan struct{}

	in       sync.Mutex // what came
	stats    MediaStats
	lastEvTS uint32
	anyEv    bool

	done      chan struct{}
	closeOnce sync.Once
}

func newMedia(u *UA, log *slog.Logger, ep *endpoint) *media {
	m := &media{u: u, log: log, ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), t0: time.Now(), tsBase: rand.Uint32(),
		done:  make(chan struct{}),
		stats: MediaStats{PayloadTypes: map[uint8]int{}, Sources: map[netip.AddrPort]int{}}}
	m.eventPT.Store(ptEvent)
	dir := dirSendRecv
	m.ourDir.Store(&dir)
	m.use(ep)
	return m
}

// use makes ep the call's endpoint and closes the previous one.
func (m *media) use(ep *endpoint) {
	old := m.ep.Swap(ep)
	if old != nil {
		old.close()
	}
	if !m.u.goes(func() { m.read(ep.rtp) }) {
		ep.close()
	}
}

// negotiated records an offer/answer's outcome: the peer's stream and our
// direction.
func (m *media) negotiated(r remoteMedia, ours string) {
	m.remote.Store(&r)
	m.ourDir.Store(&ours)
	if r.dtmfPT >= 0 {
		m.eventPT.Store(int32(r.dtmfPT))
	}
}

func (m *media) canSend() (netip.AddrPort, bool) {
	r := m.remote.Load()
	if r == nil || r.addr.Port() == 0 || r.hold() || !sends(*m.ourDir.Load()) {
		return netip.AddrPort{}, false
	}
	return r.addr, true
}

func (m *media) close() {
	m.closeOnce.Do(func() {
		close(m.done)
		m.out.Lock()
		if m.stopSend != nil {
			close(m.stopSend)
			m.stopSend = nil
		}
		m.out.Unlock()
		if ep := m.ep.Load(); ep != nil {
			ep.close()
		}
	})
}

// read counts what the RTP socket receives until it is closed.
func (m *media) read(c *net.UDPConn) {
	buf := make([]byte, 1500)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		src = unmap(src)
		var p rtp.Packet
		if !m.u.accepts(src.Addr()) || p.Unmarshal(buf[:n]) != nil || p.Version != 2 {
			continue
		}
		m.record(&p, src)
	}
}

func (m *media) record(p *rtp.Packet, src netip.AddrPort) {
	m.in.Lock()
	defer m.in.Unlock()
	s := &m.stats
	s.Packets++
	if p.SSRC == m.ssrc {
		s.Echoes++
	}
	s.PayloadTypes[p.PayloadType]++
	s.Sources[src]++
	s.Last = time.Now()
	if int32(p.PayloadType) != m.eventPT.Load() {
		return
	}
	ev, err := parseTelephoneEvent(p.Payload)
	if err != nil || !ev.End || (m.anyEv && m.lastEvTS == p.Timestamp) {
		return
	}
	m.anyEv, m.lastEvTS = true, p.Timestamp
	s.Digits += string(eventDigit(ev.Event))
}

func (m *media) received() MediaStats {
	m.in.Lock()
	defer m.in.Unlock()
	s := m.stats
	s.PayloadTypes = maps.Clone(s.PayloadTypes)
	s.Sources = maps.Clone(s.Sources)
	return s
}

// start sends PCMU every interval (restarting any earlier sender) until
// the call ends.
func (m *media) start(interval time.Duration) {
	stop := make(chan struct{})
	m.out.Lock()
	if m.stopSend != nil {
		close(m.stopSend)
	}
	m.stopSend = stop
	m.out.Unlock()
	samples := uint32(interval.Seconds() * 8000)
	payload := make([]byte, samples)
	for i := range payload {
		payload[i] = 0xff // µ-law silence
	}
	m.u.goes(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for first := true; ; first = false {
			m.sendFrame(payload, first)
			select {
			case <-stop:
				return
			case <-m.done:
				return
			case <-tick.C:
			}
		}
	})
}

// clock is the RTP timestamp of now: 8000 a second, from wall time, so
// audio and events share it whether audio runs or not.
func (m *media) clock() uint32 {
	return m.tsBase + uint32(time.Since(m.t0)*8000/time.Second)
}

// sendFrame sends one audio packet, if the stream sends now.
func (m *media) sendFrame(payload []byte, marker bool) {
	m.out.Lock()
	h := rtp.Header{Version: 2, Marker: marker, PayloadType: ptPCMU, SequenceNumber: m.seq, Timestamp: m.clock(), SSRC: m.ssrc}
	to, ok := m.canSend()
	if ok {
		m.seq++
		m.sent++
	}
	m.out.Unlock()
	if ok {
		m.write(&rtp.Packet{Header: h, Payload: payload}, to)
	}
}

func (m *media) write(p *rtp.Packet, to netip.AddrPort) {
	b, err := p.Marshal()
	if err != nil {
		return
	}
	if _, err := m.ep.Load().send.WriteToUDPAddrPort(b, to); err != nil && !errors.Is(err, net.ErrClosed) {
		m.log.Debug("rtp send failed", "to", to, "err", err)
	}
}

func (m *media) sentPackets() int {
	m.out.Lock()
	defer m.out.Unlock()
	return m.sent
}

// local is the address the SDP names for the current endpoint.
func (m *media) local() netip.AddrPort { return m.ep.Load().public }

// sendAddr is the address RTP leaves from.
func (m *media) sendAddr() netip.AddrPort {
	return unmap(m.ep.Load().send.LocalAddr().(*net.UDPAddr).AddrPort())
}

func (m *media) String() string { return fmt.Sprintf("rtp %v", m.local()) }
