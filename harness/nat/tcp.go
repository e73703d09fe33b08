package nat

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TCP through the box: an inside host connects to a view, the box
// connects to the outside endpoint from its mapping's public endpoint
// and splices the two, rewriting SIP message by message. Nothing listens
// on the public address, so unsolicited inbound connections are refused
// (RFC 5382 §4, REQ-4 lets a NAT reject them); simultaneous open and TCP
// hairpinning are not emulated.

// dialTimeout bounds the box's connection to the outside endpoint.
const dialTimeout = 10 * time.Second

// tcpMapping is a TCP mapping: a public endpoint shared by the
// connections of one mapping key (RFC 5382 §4.1 describes the same
// behaviours as RFC 4787), alive while any of them is.
type tcpMapping struct {
	key    mapKey
	public netip.AddrPort
	conns  int // under Box.mu
}

// splice is one inside connection and the box's connection outside.
type splice struct {
	in, out    *net.TCPConn
	m          *tcpMapping
	lastActive atomic.Int64 // unix nanoseconds of the last byte either way
	closeOnce  sync.Once
}

func (s *splice) touch() { s.lastActive.Store(time.Now().UnixNano()) }

func (s *splice) idle() time.Duration { return time.Since(time.Unix(0, s.lastActive.Load())) }

func (s *splice) close() {
	s.closeOnce.Do(func() {
		s.in.Close()
		s.out.Close()
	})
}

// acceptView takes inside hosts' connections to the view of o.
func (b *Box) acceptView(ln *net.TCPListener, o netip.AddrPort) {
	defer b.wg.Done()
	for {
		c, err := ln.AcceptTCP()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil { // e.g. out of descriptors: do not spin
			select {
			case <-b.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if !b.spawn(func() { b.connect(c, o) }) {
			c.Close()
			return
		}
	}
}

// spawn runs f on a goroutine that Close waits for, unless the box is closed.
func (b *Box) spawn(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

// connect carries an inside host's connection to dst.
func (b *Box) connect(in *net.TCPConn, dst netip.AddrPort) {
	src := in.RemoteAddr().(*net.TCPAddr).AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	switch {
	case !b.inside[src.Addr()]:
		b.n.stranger.Add(1)
		in.Close()
		return
	case dst.Addr() == b.cfg.Public:
		b.n.hairpinDropped.Add(1)
		in.Close()
		return
	}
	m, err := b.tcpMapping(src, dst)
	if err != nil {
		b.log.Warn("nat mapping failed", "proto", "tcp", "inside", src, "dest", dst, "err", err)
		in.Close()
		return
	}
	defer b.releaseTCP(m)
	out, err := b.dial(m.public, dst)
	if err != nil {
		b.log.Debug("nat tcp connect failed", "inside", src, "public", m.public, "dest", dst, "err", err)
		in.Close()
		return
	}
	s := &splice{in: in, out: out, m: m}
	s.touch()
	inDone := make(chan struct{})
	if !b.addSplice(s, inDone) {
		s.close()
		return
	}
	b.pump(s, in, out, func(msg []byte) []byte { return b.outboundSIP(msg, src.Addr()) })
	<-inDone
	s.close()
	b.mu.Lock()
	delete(b.splices, s)
	b.mu.Unlock()
}

// addSplice registers s for Close and starts its inbound half.
func (b *Box) addSplice(s *splice, done chan struct{}) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.splices[s] = true
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(done)
		b.pump(s, s.out, s.in, b.inboundSIP)
	}()
	return true
}

// pump copies src to dst, passing each SIP message through fix, until src
// ends (then dst's write side is shut) or the connection is idle both
// ways for TCPTimeout (RFC 5382 §5) or fails (then both are closed).
func (b *Box) pump(s *splice, src, dst *net.TCPConn, fix func([]byte) []byte) {
	buf := make([]byte, 0, 4096)
	chunk := make([]byte, 32*1024)
	for {
		_ = src.SetReadDeadline(time.Now().Add(b.cfg.TCPTimeout))
		n, err := src.Read(chunk)
		if n > 0 {
			s.touch()
			var werr error
			if buf, werr = flush(dst, append(buf, chunk[:n]...), fix, false); werr != nil {
				s.close()
				return
			}
		}
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout() && s.idle() < b.cfg.TCPTimeout:
		case errors.Is(err, io.EOF):
			_, _ = flush(dst, buf, fix, true)
			_ = dst.CloseWrite()
			return
		default:
			if ne != nil && ne.Timeout() {
				b.log.Debug("nat tcp idle timeout", "inside", s.m.key.inside, "public", s.m.public)
			}
			s.close()
			return
		}
	}
}

// flush writes the complete frames at the start of buf to dst, and
// returns what is left, moved to the start of buf.
func flush(dst io.Writer, buf []byte, fix func([]byte) []byte, atEOF bool) ([]byte, error) {
	rest := buf
	for {
		n, isSIP := nextFrame(rest, atEOF)
		if n == 0 {
			break
		}
		out := rest[:n]
		if isSIP {
			out = fix(out)
		}
		if _, err := dst.Write(out); err != nil {
			return buf[:0], err
		}
		rest = rest[n:]
	}
	return buf[:copy(buf, rest)], nil
}

// tcpMapping is the mapping for a connection from src to dst, made if
// needed, with one more connection counted on it.
func (b *Box) tcpMapping(src, dst netip.AddrPort) (*tcpMapping, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	k := b.key(src, dst)
	m := b.tcpMaps[k]
	if m == nil {
		port, err := b.tcpPortLocked(src.Port())
		if err != nil {
			return nil, err
		}
		m = &tcpMapping{key: k, public: netip.AddrPortFrom(b.cfg.Public, port)}
		b.tcpMaps[k] = m
		b.n.mapped.Add(1)
		b.log.Debug("nat mapping", "proto", "tcp", "inside", src, "public", m.public, "dest", k.dest)
	}
	m.conns++
	return m, nil
}

func (b *Box) releaseTCP(m *tcpMapping) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.conns--; m.conns == 0 && b.tcpMaps[m.key] == m {
		delete(b.tcpMaps, m.key)
		b.log.Debug("nat mapping closed", "proto", "tcp", "inside", m.key.inside, "public", m.public)
	}
}

// tcpPortLocked picks a public TCP port for a new mapping: preferred when
// port preservation is on and it is free, else one the kernel picks that
// no other mapping has.
func (b *Box) tcpPortLocked(preferred uint16) (uint16, error) {
	used := map[uint16]bool{}
	for _, m := range b.tcpMaps {
		used[m.public.Port()] = true
	}
	try := uint16(0)
	if b.cfg.PortPreservation && !used[preferred] {
		try = preferred
	}
	lc := net.ListenConfig{Control: reuseAddr}
	for range 10 {
		ln, err := lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(b.cfg.Public, try).String())
		if err != nil && try != 0 {
			try = 0
			continue
		}
		if err != nil {
			return 0, err
		}
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		if !used[port] && (b.cfg.PortPreservation || port != preferred) {
			return port, nil
		}
		try = 0
	}
	return 0, errors.New("no free public TCP port")
}

// dial connects from the public endpoint from to dst; Close cancels it.
func (b *Box) dial(from, dst netip.AddrPort) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	go func() {
		select {
		case <-b.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(from), Control: reuseAddr}
	c, err := d.DialContext(ctx, "tcp4", dst.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// reuseAddr sets SO_REUSEADDR, so that the connections of one mapping can
// share its public endpoint.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	return errors.Join(err, serr)
}
