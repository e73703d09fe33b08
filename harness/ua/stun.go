package ua

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v3"
)

// stunMapping asks server, from c, for c's public address (an RFC 5389
// Binding request, retransmitted at 500 ms doubling, RFC 5389 section
// 7.2.1), and returns its XOR-MAPPED-ADDRESS. c must have no other reader.
func stunMapping(ctx context.Context, c *net.UDPConn, server netip.AddrPort, only netip.Prefix) (netip.AddrPort, error) {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.SetReadDeadline(time.Time{})
	rto := 500 * time.Millisecond
	for range 7 {
		if err := ctx.Err(); err != nil {
			return netip.AddrPort{}, err
		}
		if _, err := c.WriteToUDPAddrPort(req.Raw, server); err != nil {
			return netip.AddrPort{}, err
		}
		a, err := readBinding(ctx, c, req, time.Now().Add(rto), only)
		if err == nil {
			return a, nil
		}
		if !errors.Is(err, errNoAnswer) {
			return netip.AddrPort{}, err
		}
		rto *= 2
	}
	return netip.AddrPort{}, fmt.Errorf("stun %v: no answer", server)
}

var errNoAnswer = errors.New("no answer")

// readBinding reads c until the answer to req, or until deadline.
func readBinding(ctx context.Context, c *net.UDPConn, req *stun.Message, deadline time.Time, only netip.Prefix) (netip.AddrPort, error) {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if isTimeout(err) {
			return netip.AddrPort{}, errNoAnswer
		}
		if err != nil {
			return netip.AddrPort{}, err
		}
		if only.IsValid() && !only.Contains(src.Addr().Unmap()) {
			continue
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if res.Decode() != nil || res.TransactionID != req.TransactionID {
			continue
		}
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(res); err != nil {
			return netip.AddrPort{}, fmt.Errorf("stun answer: %w", err)
		}
		ip, _ := netip.AddrFromSlice(xa.IP)
		return netip.AddrPortFrom(ip.Unmap(), uint16(xa.Port)), nil
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// STUNServer answers RFC 5389 Binding requests on one UDP socket with the
// request's source as XOR-MAPPED-ADDRESS.
type STUNServer struct {
	c  *net.UDPConn
	wg sync.WaitGroup
}

// NewSTUNServer starts a STUN server on addr (port 0 = ephemeral).
func NewSTUNServer(addr netip.AddrPort) (*STUNServer, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	s := &STUNServer{c: c}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the server's address.
func (s *STUNServer) Addr() netip.AddrPort { return unmap(s.c.LocalAddr().(*net.UDPAddr).AddrPort()) }

// Close stops the server and waits for it.
func (s *STUNServer) Close() error {
	err := s.c.Close()
	s.wg.Wait()
	return err
}

func (s *STUNServer) serve() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, src, err := s.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if req.Decode() != nil || req.Type != stun.BindingRequest {
			continue
		}
		src = unmap(src)
		res, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())}, stun.Fingerprint)
		if err == nil {
			_, _ = s.c.WriteToUDPAddrPort(res.Raw, src)
		}
	}
}
