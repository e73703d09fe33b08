package sip

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"sipanchor/config"

	"github.com/emiago/sipgo/sip"
)

// listener is one bound SIP socket and the address it is known by.
type listener struct {
	transport string         // "udp" or "tcp"
	local     netip.AddrPort // the bound address (the port is real even for :0)
	host      string         // advertised in Via and Record-Route
	port      int

	pc      net.PacketConn // udp
	stamped *stampedConn   // udp: pc, knowing how long each datagram waited
	rcvbuf  int            // udp: the receive buffer the kernel granted
	ln      net.Listener   // tcp
}

func (l *listener) key() string { return l.transport + ":" + l.local.String() }

// network is the sipgo transport name.
func (l *listener) network() string { return strings.ToUpper(l.transport) }

// laddr is the sipgo local address that makes the transport send from this
// socket: a UDP request sent from the listening port keeps the UA's NAT
// mapping and matches what the UA registered through.
func (l *listener) laddr() sip.Addr {
	return sip.Addr{IP: net.IP(l.local.Addr().AsSlice()), Port: int(l.local.Port())}
}

// rrURI is this listener's Record-Route URI.
func (l *listener) rrURI() sip.Uri {
	u := sip.Uri{Scheme: "sip", Host: l.host, Port: l.port, UriParams: sip.NewParams()}
	if l.transport != "udp" {
		u.UriParams.Add("transport", l.transport)
	}
	u.UriParams.Add("lr", "")
	return u
}

// bind opens the sockets of cfg's listeners. advertise is [sip] advertise.
func bind(ls []config.Listener, advertise string) ([]*listener, error) {
	var out []*listener
	closeAll := func() {
		for _, l := range out {
			l.close()
		}
	}
	picked := map[netip.Addr]uint16{} // port 0: the port the kernel chose for this IP
	for _, cl := range ls {
		l := &listener{transport: cl.Transport}
		addr, anyPort := cl.Addr.String(), ""
		if p, ok := picked[cl.Addr.Addr()]; ok && cl.Addr.Port() == 0 {
			// The same port on every transport, as a UA expects of a SIP
			// server, when it is free; any free port when it is not.
			addr, anyPort = netip.AddrPortFrom(cl.Addr.Addr(), p).String(), addr
		}
		// The family is explicit: "udp" on 0.0.0.0 would be a dual-stack
		// [::] socket, and Via would advertise an IPv6 address.
		family := "4"
		if cl.Addr.Addr().Is6() {
			family = "6"
		}
		switch cl.Transport {
		case "udp":
			pc, err := net.ListenPacket("udp"+family, addr)
			if err != nil && anyPort != "" {
				pc, err = net.ListenPacket("udp"+family, anyPort)
			}
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("listen %s: %w", cl, err)
			}
			// Timestamps and buffer sizes are best effort: without them
			// the listener works, it only cannot tell that it is behind.
			l.stamped, _ = newStampedConn(pc.(*net.UDPConn))
			l.pc = l.stamped
			l.rcvbuf, _ = setUDPBuffers(pc, udpBufferSize)
			l.local = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		case "tcp":
			ln, err := net.Listen("tcp"+family, addr)
			if err != nil && anyPort != "" {
				ln, err = net.Listen("tcp"+family, anyPort)
			}
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("listen %s: %w", cl, err)
			}
			l.ln = ln
			l.local = ln.Addr().(*net.TCPAddr).AddrPort()
		default:
			closeAll()
			return nil, fmt.Errorf("listen %s: unsupported transport", cl)
		}
		l.local = netip.AddrPortFrom(l.local.Addr().Unmap(), l.local.Port())
		if cl.Addr.Port() == 0 {
			if _, ok := picked[cl.Addr.Addr()]; !ok {
				picked[cl.Addr.Addr()] = l.local.Port()
			}
		}
		l.host, l.port = advertised(l.local, advertise)
		out = append(out, l)
	}
	return out, nil
}

func (l *listener) close() error {
	if l.pc != nil {
		return l.pc.Close()
	}
	if l.ln != nil {
		return l.ln.Close()
	}
	return nil
}

// advertised is the host and port a listener puts in Via and Record-Route:
// [sip] advertise when set, else the bound address, else (for a wildcard
// bind) the machine's first non-loopback address.
func advertised(local netip.AddrPort, advertise string) (string, int) {
	port := int(local.Port())
	if advertise != "" {
		if h, p, err := net.SplitHostPort(advertise); err == nil {
			n, _ := strconv.Atoi(p)
			return strings.Trim(h, "[]"), n
		}
		return strings.Trim(advertise, "[]"), port
	}
	a := local.Addr()
	if !a.IsUnspecified() {
		return a.String(), port
	}
	if ip := primaryAddr(a.Is6()); ip.IsValid() {
		return ip.String(), port
	}
	if a.Is6() {
		return "::1", port
	}
	return "127.0.0.1", port
}

// primaryAddr is the first global-unicast interface address of the family.
func primaryAddr(v6 bool) netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.Is6() == v6 && ip.IsGlobalUnicast() {
			return ip
		}
	}
	return netip.Addr{}
}

// interfaceAddrs lists the machine's addresses, for recognising requests
// addressed to a wildcard listener.
func interfaceAddrs() []netip.Addr {
	var out []netip.Addr
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

func init() {
	// sipgo reads datagrams into 32 KiB and refuses to send UDP messages
	// over 1300 bytes. A proxy relays what it was given: read whole
	// datagrams (up to the 64 KiB UDP limit) and send large ones as
	// Kamailio and OpenSIPS do, leaving fragmentation to IP.
	sip.TransportBufferReadSize = 65535
	sip.UDPMTUSize = 65535
}
