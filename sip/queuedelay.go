package sip

import (
	"net"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stampedConn is a SIP UDP listening socket that knows how long each
// datagram waited in the kernel's receive queue before the read loop took
// it (SO_TIMESTAMPNS: the kernel stamps a datagram on arrival). That wait
// is the proxy's queueing delay: when the process falls behind, whether
// from CPU or from scheduling, it is the read loop that waits, and every
// message behind it. sipgo's read loop is the only reader, and it runs the
// read filter right after each read, so the filter can ask how long the
// datagram it holds has waited.
type stampedConn struct {
	*net.UDPConn
	oob    []byte
	waited atomic.Int64 // ns: the datagram last read
	smooth atomic.Int64 // ns: a moving average of waited, for the metric
}

// newStampedConn turns on kernel receive timestamps for c. Without them
// (an error) every datagram reads as not having waited.
func newStampedConn(c *net.UDPConn) (*stampedConn, error) {
	s := &stampedConn{UDPConn: c, oob: make([]byte, unix.CmsgSpace(16))}
	rc, err := c.SyscallConn()
	if err != nil {
		return s, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return s, err
	}
	return s, serr
}

// ReadFrom is net.PacketConn's, recording how long the datagram waited.
func (s *stampedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, oobn, _, from, err := s.ReadMsgUDPAddrPort(b, s.oob)
	if err != nil {
		return n, nil, err
	}
	var w int64
	if at, ok := arrival(s.oob[:oobn]); ok {
		w = max(time.Now().UnixNano()-at, 0) // the stamp is wall-clock time
	}
	s.waited.Store(w)
	// An average over about 64 datagrams: cheap, and steady enough to read.
	s.smooth.Store(s.smooth.Load() + (w-s.smooth.Load())/64)
	return n, net.UDPAddrFromAddrPort(from), nil
}

// Waited is how long the datagram last read waited in the receive queue.
func (s *stampedConn) Waited() time.Duration { return time.Duration(s.waited.Load()) }

// delay is the moving average of the wait.
func (s *stampedConn) delay() time.Duration { return time.Duration(s.smooth.Load()) }

const sizeofTimespec = int(unsafe.Sizeof(unix.Timespec{}))

// arrival reads the SCM_TIMESTAMPNS control message: the kernel's arrival
// time in Unix nanoseconds. A hand-rolled walk, because
// unix.ParseSocketControlMessage allocates on every datagram.
func arrival(oob []byte) (int64, bool) {
	const hdr = unix.SizeofCmsghdr
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= hdr+sizeofTimespec {
			var ts unix.Timespec
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&ts)), sizeofTimespec), oob[unix.CmsgLen(0):])
			return ts.Nano(), true
		}
		next := unix.CmsgSpace(l - hdr)
		if next >= len(oob) {
			return 0, false
		}
		oob = oob[next:]
	}
	return 0, false
}
