package nat

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// udpMapping is a UDP mapping: a socket on the public address for one
// mapping key, and what its inside endpoint has sent to (the filter).
type udpMapping struct {
	key     mapKey
	conn    *net.UDPConn // under Box.mu: Rebind replaces it
	sent    map[netip.AddrPort]bool
	sentIP  map[netip.Addr]bool
	lastOut atomic.Int64 // unix nanoseconds of the last outbound packet
	gone    bool         // under Box.mu: expired and closed
}

func (m *udpMapping) public() netip.AddrPort {
	return m.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (m *udpMapping) idle(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, m.lastOut.Load()))
}

// expired: RFC 4787 §4.3, no outbound packet for the mapping timeout.
func (m *udpMapping) expired(now time.Time, timeout time.Duration) bool {
	return m.idle(now) > timeout
}

// readView forwards what inside hosts send to a view socket out of the
// box, until the socket is closed.
func (b *Box) readView(v *udpView) {
	defer b.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, src, err := v.conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil {
			b.outbound(v, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), buf[:n])
		}
	}
}

// outbound sends a datagram from inside host src, received at view v, to
// the outside endpoint v shows, from src's mapping.
func (b *Box) outbound(v *udpView, src netip.AddrPort, pkt []byte) {
	if !b.inside[src.Addr()] {
		b.n.stranger.Add(1)
		return
	}
	dst := v.outside
	if dst.Addr() == b.cfg.Public {
		if !b.cfg.Hairpin {
			b.n.hairpinDropped.Add(1)
			return
		}
		// RFC 4787 §6: out from src's mapping to the public endpoint,
		// which the box receives like any packet from outside.
		b.n.hairpinned.Add(1)
	}
	conn, err := b.udpMapping(src, dst)
	if err != nil {
		b.log.Warn("nat mapping failed", "inside", src, "dest", dst, "err", err)
		return
	}
	_, _ = conn.WriteToUDPAddrPort(b.outboundSIP(pkt, src.Addr()), dst)
}

// udpMapping is the socket src's packets to dst leave from: its mapping,
// made or refreshed (only outbound packets refresh, RFC 4787 §4.3 REQ-6),
// with dst let through its filter from now on.
func (b *Box) udpMapping(src, dst netip.AddrPort) (*net.UDPConn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	now := time.Now()
	k := b.key(src, dst)
	m := b.udpMaps[k]
	if m != nil && m.expired(now, b.cfg.UDPTimeout) {
		b.expireLocked(m)
		m = nil
	}
	if m == nil {
		conn, err := b.listenPublic(src.Port())
		if err != nil {
			return nil, err
		}
		m = &udpMapping{key: k, conn: conn, sent: map[netip.AddrPort]bool{}, sentIP: map[netip.Addr]bool{}}
		b.udpMaps[k] = m
		b.n.mapped.Add(1)
		b.wg.Add(1)
		go b.readPublic(m, conn)
		b.log.Debug("nat mapping", "proto", "udp", "inside", src, "public", m.public(), "dest", k.dest)
	}
	m.lastOut.Store(now.UnixNano())
	m.sent[dst], m.sentIP[dst.Addr()] = true, true
	return m.conn, nil
}

// listenPublic binds a socket on the public address: at port when port
// preservation is on and it is free (RFC 4787 §4.2.1), else at a random
// port (never port itself, when preservation is off).
func (b *Box) listenPublic(port uint16) (*net.UDPConn, error) {
	if b.cfg.PortPreservation && port != 0 {
		if c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.cfg.Public, port))); err == nil {
			return c, nil
		}
	}
	for {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.cfg.Public, 0)))
		if err != nil || b.cfg.PortPreservation || c.LocalAddr().(*net.UDPAddr).Port != int(port) {
			return c, err
		}
		c.Close()
	}
}

// expireLocked removes a mapping whose timer ran out.
func (b *Box) expireLocked(m *udpMapping) {
	if b.udpMaps[m.key] == m {
		delete(b.udpMaps, m.key)
	}
	m.gone = true
	m.conn.Close()
	b.n.expired.Add(1)
	b.log.Debug("nat mapping expired", "proto", "udp", "inside", m.key.inside, "public", m.public())
}

// readPublic passes what arrives at a mapping's public socket to its
// inside endpoint, until the socket is closed.
func (b *Box) readPublic(m *udpMapping, conn *net.UDPConn) {
	defer b.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil {
			b.inbound(m, conn, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), buf[:n])
		}
	}
}

// inbound delivers a datagram from outside endpoint src, received on a
// mapping's socket, to the inside endpoint if the filter lets it (RFC
// 4787 §5), from src's view.
func (b *Box) inbound(m *udpMapping, conn *net.UDPConn, src netip.AddrPort, pkt []byte) {
	b.mu.Lock()
	if m.gone || m.conn != conn || m.expired(time.Now(), b.cfg.UDPTimeout) {
		b.mu.Unlock()
		b.n.unmapped.Add(1)
		return
	}
	pass := b.filterLocked(m, src)
	b.mu.Unlock()
	if !pass {
		b.n.filtered.Add(1)
		return
	}
	if !b.outsideIP(src.Addr()) { // an inside host or a view, bypassing the box
		b.n.stranger.Add(1)
		return
	}
	v, err := b.udpView(src)
	if err != nil {
		b.viewFailed(src, err)
		return
	}
	_, _ = v.conn.WriteToUDPAddrPort(b.inboundSIP(pkt), m.key.inside)
}

// filterLocked: does the mapping's filtering behaviour let src in?
func (b *Box) filterLocked(m *udpMapping, src netip.AddrPort) bool {
	switch b.cfg.Filtering {
	case EndpointIndependent:
		return true
	case AddressDependent:
		return m.sentIP[src.Addr()]
	}
	return m.sent[src]
}

// Rebind moves every UDP mapping to a new public port, closing the old
// one, and forgets whom each has sent to, as a NAT that lost its state
// (or a router that renumbered) would: the outside sees the inside host
// come from a new port mid-call.
func (b *Box) Rebind() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	for _, m := range b.udpMaps {
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.cfg.Public, 0)))
		if err != nil {
			return err
		}
		old := m.public()
		m.conn.Close()
		m.conn = conn
		m.sent, m.sentIP = map[netip.AddrPort]bool{}, map[netip.Addr]bool{}
		b.wg.Add(1)
		go b.readPublic(m, conn)
		b.log.Info("nat rebind", "inside", m.key.inside, "from", old, "to", m.public())
	}
	return nil
}
