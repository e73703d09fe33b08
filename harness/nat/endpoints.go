package nat

import (
	"bytes"
	"net/netip"
	"strconv"
)

// sipEndpoints lists the IPv4 endpoints a SIP message tells its receiver
// to send to: sig from the Via, Route, Record-Route and Contact headers
// (RFC 3261 §18.2.2, §16.12, §12.1; ports default to 5060, 5061 for sips
// URIs and TLS Vias; parameter values such as received= are not
// destinations and are skipped), media from an SDP body (RFC 4566: each
// m= port at its c= address, the RTCP port above it, and an RFC 3605
// a=rtcp: port).
func sipEndpoints(msg []byte) (sig, media []netip.AddrPort) {
	if !looksSIP(msg) {
		return nil, nil
	}
	start := bodyStart(msg)
	head := msg
	if start >= 0 {
		head = msg[:start]
		media = sdpEndpoints(msg[start:])
	}
	headerLines(head, func(_, _ int, name, value []byte) {
		if routeHeader(name) {
			sig = append(sig, headerEndpoints(value)...)
		}
	})
	return sig, media
}

// routeHeader: Via, Route, Record-Route, Contact and the compact forms
// v and m (RFC 3261 §7.3.3).
func routeHeader(name []byte) bool {
	for _, h := range []string{"Via", "v", "Route", "Record-Route", "Contact", "m"} {
		if bytes.EqualFold(name, []byte(h)) {
			return true
		}
	}
	return false
}

func headerEndpoints(value []byte) []netip.AddrPort {
	var out []netip.AddrPort
	eachIPv4(value, func(i, j int, a netip.Addr) {
		if i > 0 && value[i-1] == '=' {
			return
		}
		port, ok := portAfter(value[j:])
		if !ok {
			port = 5060
			seg := value[bytes.LastIndexByte(value[:i], ',')+1 : i]
			if bytes.Contains(bytes.ToLower(seg), []byte("sips:")) || bytes.Contains(bytes.ToUpper(seg), []byte("/TLS")) {
				port = 5061
			}
		}
		if port != 0 {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	})
	return out
}

// portAfter reads ":port" at the start of b; ok is false when there is no
// colon, and the port is 0 when what follows it is not a port.
func portAfter(b []byte) (uint16, bool) {
	if len(b) == 0 || b[0] != ':' {
		return 0, false
	}
	n := 1
	for n < len(b) && n <= 6 && '0' <= b[n] && b[n] <= '9' {
		n++
	}
	p, err := strconv.ParseUint(string(b[1:n]), 10, 16)
	if err != nil {
		return 0, true
	}
	return uint16(p), true
}

// sdpSection is one m= section of an SDP body, as sdpEndpoints reads it.
type sdpSection struct {
	addr      netip.Addr // c=, the section's or the session's
	port      uint16     // m=
	rtcp      uint16     // a=rtcp:
	rtcpAddr  netip.Addr // a=rtcp:'s own address, if any
	sessionAt bool       // still in the session part (before any m=)
}

func sdpEndpoints(body []byte) []netip.AddrPort {
	if !bytes.HasPrefix(body, []byte("v=0")) {
		return nil
	}
	var out []netip.AddrPort
	var session netip.Addr
	s := sdpSection{sessionAt: true}
	for _, line := range bytes.Split(body, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case bytes.HasPrefix(line, []byte("c=")):
			if a, ok := connectionAddr(line[2:]); ok {
				s.addr = a
				if s.sessionAt {
					session = a
				}
			}
		case bytes.HasPrefix(line, []byte("m=")):
			out = s.endpoints(out)
			s = sdpSection{addr: session, port: mediaPort(line[2:])}
		case bytes.HasPrefix(line, []byte("a=rtcp:")):
			s.rtcp, s.rtcpAddr = rtcpAttr(line[len("a=rtcp:"):])
		}
	}
	return s.endpoints(out)
}

func (s sdpSection) endpoints(out []netip.AddrPort) []netip.AddrPort {
	if s.sessionAt || s.port == 0 || !s.addr.Is4() {
		return out
	}
	out = append(out, netip.AddrPortFrom(s.addr, s.port))
	if s.port < 65535 {
		out = append(out, netip.AddrPortFrom(s.addr, s.port+1))
	}
	if s.rtcp != 0 {
		a := s.addr
		if s.rtcpAddr.Is4() {
			a = s.rtcpAddr
		}
		out = append(out, netip.AddrPortFrom(a, s.rtcp))
	}
	return out
}

// connectionAddr reads "IN IP4 addr[/ttl]" (RFC 4566 §5.7).
func connectionAddr(v []byte) (netip.Addr, bool) {
	f := bytes.Fields(v)
	if len(f) != 3 || string(f[1]) != "IP4" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(string(bytes.SplitN(f[2], []byte("/"), 2)[0]))
	return a, err == nil && a.Is4()
}

// mediaPort reads the port of "media port[/count] proto fmt…" (§5.14).
func mediaPort(v []byte) uint16 {
	f := bytes.Fields(v)
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.ParseUint(string(bytes.SplitN(f[1], []byte("/"), 2)[0]), 10, 16)
	return uint16(p)
}

// rtcpAttr reads "port [IN IP4 addr]" (RFC 3605 §2.1).
func rtcpAttr(v []byte) (uint16, netip.Addr) {
	f := bytes.Fields(v)
	if len(f) == 0 {
		return 0, netip.Addr{}
	}
	p, _ := strconv.ParseUint(string(f[0]), 10, 16)
	var a netip.Addr
	if len(f) == 4 {
		a, _ = connectionAddr(bytes.Join(f[1:], []byte(" ")))
	}
	return uint16(p), a
}
