package nat

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// View is where inside hosts reach outside: V(X):p for X:p. It binds a UDP
// socket and a TCP listener there, if not yet bound, so that a test can
// tell a UA where its server is. X may be the box's own Public address
// (to hairpin), or an IPv4 address outside 127/8 (a local interface's),
// which SIP rewriting then treats as outside too; it must not be an
// inside host or a view.
func (b *Box) View(outside netip.AddrPort) (netip.AddrPort, error) {
	if a := outside.Addr(); a.Is4() && !b.inside[a] && !b.view.Contains(a) {
		b.mu.Lock()
		_, err := b.viewIPLocked(a)
		b.mu.Unlock()
		if err != nil {
			return netip.AddrPort{}, err
		}
	}
	return b.bindView(outside, true)
}

// outsideIP reports whether a can be shown at a view: IPv4, neither an
// inside host nor a view, and in 127/8 (all a loopback box can reach) or
// already given a view.
func (b *Box) outsideIP(a netip.Addr) bool {
	if !a.Is4() || b.inside[a] || b.view.Contains(a) {
		return false
	}
	if a.As4()[0] == 127 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.views[a]
	return ok
}

// viewIPLocked is the view IP of outside IP a, given out on first use:
// the View prefix's first host, then the next.
func (b *Box) viewIPLocked(a netip.Addr) (netip.Addr, error) {
	if v, ok := b.views[a]; ok {
		return v, nil
	}
	n := uint32(len(b.views) + 1)
	if uint64(n) >= uint64(1)<<(32-b.view.Bits())-1 {
		return netip.Addr{}, fmt.Errorf("view of %v: %w (%v)", a, ErrViewFull, b.view)
	}
	base := b.view.Masked().Addr().As4()
	var ip [4]byte
	binary.BigEndian.PutUint32(ip[:], binary.BigEndian.Uint32(base[:])+n)
	v := netip.AddrFrom4(ip)
	b.views[a], b.outs[v] = v, a
	b.log.Debug("nat view", "outside", a, "view", v)
	return v, nil
}

// toView is the inbound rewrite: an outside IP becomes its view.
func (b *Box) toView(a netip.Addr) (netip.Addr, bool) {
	if !b.outsideIP(a) {
		return a, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v, err := b.viewIPLocked(a)
	return v, err == nil
}

// fromView is the outbound rewrite: a view becomes its outside IP.
func (b *Box) fromView(a netip.Addr) (netip.Addr, bool) {
	if !b.view.Contains(a) {
		return a, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.outs[a]
	return o, ok
}

// bindView binds V(o):p for UDP, and for TCP too if tcp, and returns it.
func (b *Box) bindView(o netip.AddrPort, tcp bool) (netip.AddrPort, error) {
	if !b.outsideIP(o.Addr()) || o.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("view of %v: %w", o, ErrNotOutside)
	}
	v, err := b.udpView(o)
	if err != nil || !tcp {
		return v.at, err
	}
	return v.at, b.tcpView(o, v.at)
}

// udpView is a UDP socket at the view of an outside endpoint; inside hosts
// send to it to reach that endpoint, and receive from it what the
// endpoint sends them.
type udpView struct {
	outside, at netip.AddrPort
	conn        *net.UDPConn
}

// udpView is the view socket of o, bound and read from on first use.
func (b *Box) udpView(o netip.AddrPort) (*udpView, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return &udpView{}, ErrClosed
	}
	ip, err := b.viewIPLocked(o.Addr())
	if err != nil {
		return &udpView{}, err
	}
	at := netip.AddrPortFrom(ip, o.Port())
	if v, ok := b.udpViews[at]; ok {
		return v, nil
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(at))
	if err != nil {
		return &udpView{}, fmt.Errorf("view of %v: %w", o, err)
	}
	v := &udpView{outside: o, at: at, conn: conn}
	b.udpViews[at] = v
	b.wg.Add(1)
	go b.readView(v)
	return v, nil
}

// tcpView listens at the view at of o, if not yet.
func (b *Box) tcpView(o, at netip.AddrPort) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if _, ok := b.tcpViews[at]; ok {
		return nil
	}
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(at))
	if err != nil {
		return fmt.Errorf("view of %v: %w", o, err)
	}
	b.tcpViews[at] = ln
	b.wg.Add(1)
	go b.acceptView(ln, o)
	return nil
}

// inboundSIP prepares a SIP message from outside for an inside host: the
// endpoints it names get their views bound, then its outside addresses
// become views. Other data is returned as it is.
func (b *Box) inboundSIP(msg []byte) []byte {
	if !looksSIP(msg) {
		return msg
	}
	sig, media := sipEndpoints(msg)
	for _, ap := range sig {
		b.bindNamed(ap, true)
	}
	for _, ap := range media {
		b.bindNamed(ap, false)
	}
	out, changed := rewriteSIP(msg, b.toView)
	if changed {
		b.n.rewritten.Add(1)
	}
	return out
}

// bindNamed binds the view of an endpoint a message names, if it is
// outside; a failure costs the inside host that one destination.
func (b *Box) bindNamed(ap netip.AddrPort, tcp bool) {
	if !b.outsideIP(ap.Addr()) {
		return
	}
	if _, err := b.bindView(ap, tcp); err != nil {
		b.viewFailed(ap, err)
	}
}

// viewFailed logs, once per endpoint, that its view could not be bound.
func (b *Box) viewFailed(ap netip.AddrPort, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.failed[ap] {
		return
	}
	b.failed[ap] = true
	b.log.Warn("nat view not bound", "outside", ap, "err", err)
}

// outboundSIP prepares a SIP message from inside host src for outside:
// views become outside addresses again; the broken ALG then puts the
// public IP for src's, without fixing Content-Length.
func (b *Box) outboundSIP(msg []byte, src netip.Addr) []byte {
	if !looksSIP(msg) {
		return msg
	}
	out, changed := rewriteSIP(msg, b.fromView)
	if b.cfg.BrokenALG {
		var alg bool
		out, alg = replaceIPs(out, func(a netip.Addr) (netip.Addr, bool) { return b.cfg.Public, a == src })
		changed = changed || alg
	}
	if changed {
		b.n.rewritten.Add(1)
	}
	return out
}
