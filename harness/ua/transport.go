package ua

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// sipConn is the UA's one SIP socket: a UDP socket, or a TCP connection to
// the server.
type sipConn interface {
	local() netip.AddrPort
	// send writes one message; to is ignored over TCP (one peer).
	send(b []byte, to netip.AddrPort) error
	reliable() bool
	close() error
}

type udpConn struct{ c *net.UDPConn }

func (u udpConn) local() netip.AddrPort { return unmap(u.c.LocalAddr().(*net.UDPAddr).AddrPort()) }
func (u udpConn) reliable() bool        { return false }
func (u udpConn) close() error          { return u.c.Close() }
func (u udpConn) send(b []byte, to netip.AddrPort) error {
	_, err := u.c.WriteToUDPAddrPort(b, to)
	return err
}

type tcpConn struct {
	mu sync.Mutex // one message at a time on the stream
	c  *net.TCPConn
}

func (t *tcpConn) local() netip.AddrPort { return unmap(t.c.LocalAddr().(*net.TCPAddr).AddrPort()) }
func (t *tcpConn) reliable() bool        { return true }
func (t *tcpConn) close() error          { return t.c.Close() }
func (t *tcpConn) send(b []byte, _ netip.AddrPort) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := t.c.Write(b)
	return err
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// listen opens the SIP socket of cfg: bound UDP, or TCP dialled to Server
// from Local (and SIPPort, when set).
func listen(cfg *Config) (sipConn, error) {
	local := netip.AddrPortFrom(cfg.Local, uint16(cfg.SIPPort))
	if cfg.Transport == "tcp" {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(local)}
		c, err := d.DialContext(context.Background(), "tcp", cfg.Server.String())
		if err != nil {
			return nil, err
		}
		return &tcpConn{c: c.(*net.TCPConn)}, nil
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
	if err != nil {
		return nil, err
	}
	return udpConn{c: c}, nil
}

// accepts reports whether a packet from src may reach the UA (OnlyFrom).
func (u *UA) accepts(src netip.Addr) bool {
	return !u.cfg.OnlyFrom.IsValid() || u.cfg.OnlyFrom.Contains(src.Unmap())
}

// readLoop reads the SIP socket until it is closed.
func (u *UA) readLoop() {
	switch c := u.conn.(type) {
	case udpConn:
		u.readUDP(c.c)
	case *tcpConn:
		u.readTCP(c.c)
	}
}

func (u *UA) readUDP(c *net.UDPConn) {
	buf := make([]byte, 65535)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		src = unmap(src)
		if !u.accepts(src.Addr()) || len(bytes.TrimSpace(buf[:n])) == 0 {
			continue // a stranger, or a keepalive
		}
		m, err := sip.ParseMessage(bytes.Clone(buf[:n]))
		if err != nil {
			u.log.Debug("unparsable SIP message dropped", "peer", src, "err", err)
			continue
		}
		u.dispatch(m, src)
	}
}

func (u *UA) readTCP(c *net.TCPConn) {
	src := unmap(c.RemoteAddr().(*net.TCPAddr).AddrPort())
	if !u.accepts(src.Addr()) {
		return
	}
	p := sip.NewParser().NewSIPStream()
	defer p.Close()
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		data := buf[:n]
		if p.Buffer().Len() == 0 {
			data = bytes.TrimLeft(data, "\r\n") // keepalives between messages
		}
		if len(data) == 0 {
			continue
		}
		err = p.ParseSIPStream(data, func(m sip.Message) { u.dispatch(m, src) })
		if err != nil && err != sip.ErrParseSipPartial {
			u.log.Warn("SIP stream unparsable, connection closed", "peer", src, "err", err)
			return
		}
	}
}

// dispatch hands a parsed message to the transaction or dialog it belongs to.
func (u *UA) dispatch(m sip.Message, src netip.AddrPort) {
	switch m := m.(type) {
	case *sip.Request:
		m.SetSource(src.String())
		u.onRequest(m, src)
	case *sip.Response:
		m.SetSource(src.String())
		u.onResponse(m)
	}
}

// sendTo writes a message to dst (ignored over TCP).
func (u *UA) sendTo(m sip.Message, dst netip.AddrPort) error {
	return u.conn.send([]byte(m.String()), dst)
}
