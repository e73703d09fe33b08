package sip

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// udpBufferSize is what a SIP UDP listener asks the kernel for, each way.
// The Linux default (212 KiB) holds about 300 INVITEs: one scheduling
// hiccup at a few thousand messages a second overflows it and the kernel
// drops requests and responses alike, which the peers then see as lost
// calls (measured: 12,000 drops in a 10 s step at 800 calls/s). Kamailio
// and OpenSIPS raise it at start for the same reason. A full buffer of
// this size is well under a second of work; sustained overload is the
// load meter's job (overload.go), not the buffer's.
const udpBufferSize = 8 << 20

// setUDPBuffers sizes a UDP socket's receive and send buffers to n bytes:
// SO_RCVBUFFORCE/SO_SNDBUFFORCE when the process may exceed
// net.core.rmem_max (root or CAP_NET_ADMIN), else as much as the sysctl
// allows. It returns the receive size the kernel granted (the kernel
// reports twice what it accounts for payload; that is what is returned).
func setUDPBuffers(pc net.PacketConn, n int) (int, error) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return 0, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var got int
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], n) != nil {
				// Not privileged: the kernel caps this at its rmem_max/wmem_max.
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], n); e != nil {
					serr = e
				}
			}
		}
		var gerr error
		if got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF); gerr != nil {
			serr = gerr
		}
	})
	if err != nil {
		return 0, err
	}
	return got, serr
}
