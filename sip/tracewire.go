package sip

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// Where the trace sees messages: at the sockets sipanchor puts in front of
// sipgo, so that it has them as they are on the wire (before screening
// rewrites a request, after restoreVia puts a response's Via back).
//
//   - UDP in: the read filter, once a datagram's source is not banned.
//   - UDP out: tracedPacketConn, under everything that sends from a
//     listener (sipgo, the read filter's stateless answers, stray
//     responses).
//   - TCP, connections others opened: screenConn, each message framed in,
//     and every write out (sipgo's and its own answers).
//
// A message sent is recorded just before it is handed to the socket (and
// marked if that fails): recorded after, the answer to it could be read
// and recorded first.
//
// Connections sipgo dials itself (to a TCP next hop no UA connection
// leads to) are not seen: sipgo v1.7.2 makes them with a net.Dialer it
// gives no way to wrap.

// received records a datagram that came in on a UDP listener.
func (t *tracer) received(props sip.TransportReadProps, data []byte) {
	if t == nil {
		return
	}
	local, _ := addrPortOf(props.LocalAddr)
	remote, _ := addrPortOf(props.RemoteAddr)
	t.record(traceIn, "udp", local, remote, data)
}

// tracedPacketConn is a UDP listener's socket as every sender writes to
// it: what is sent is recorded.
type tracedPacketConn struct {
	net.PacketConn
	trace *tracer
	local netip.AddrPort
}

func (c *tracedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	remote, _ := addrPortOf(addr)
	m := c.trace.record(traceOut, "udp", c.local, remote, b)
	n, err := c.PacketConn.WriteTo(b, addr)
	if err != nil {
		m.failed(err)
	}
	return n, err
}

// traced records a message of an accepted TCP connection, received or
// about to be sent.
func (c *screenConn) traced(dir traceDir, msg []byte) traceMark {
	return c.l.trace.record(dir, "tcp", c.local, c.remote, msg)
}

// write sends b over the connection, recorded.
func (c *screenConn) write(b []byte) error {
	m := c.traced(traceOut, b)
	_, err := c.Conn.Write(b)
	if err != nil {
		m.failed(err)
	}
	return err
}

// send writes an answer sipanchor made itself over the connection.
func (c *screenConn) send(b []byte) { _ = c.write(b) }

// traceCallID is msg's Call-ID (RFC 3261 §20.8; compact form "i", §7.3.3)
// read as sipgo's parser reads it, without parsing anything else: the
// value of the last Call-ID header, white space trimmed and folded lines
// joined; nil when there is none. Only the headers are read. Lines end
// in CRLF, the start line at the first CR as in sipgo; a message whose
// start line ends in a bare LF is cut at LFs instead, as screen's
// scanMessage does, so that the 400 it gets is filed with it.
func traceCallID(msg []byte) []byte {
	for len(msg) >= 2 && msg[0] == '\r' && msg[1] == '\n' {
		msg = msg[2:] // RFC 3261 §7.5, over a stream
	}
	cr := bytes.IndexByte(msg, '\r')
	crlf := cr >= 0 && cr+1 < len(msg) && msg[cr+1] == '\n'
	_, rest := traceLine(msg, crlf) // the start line
	var id []byte
	for first := true; len(rest) > 0; first = false {
		var line []byte
		line, rest = traceLine(rest, crlf)
		if len(line) == 0 {
			break // the end of the headers
		}
		if !first && (line[0] == ' ' || line[0] == '\t') || !maybeCallID(line) {
			continue // a continuation of a header that is not the Call-ID, or another header
		}
		conts := rest
		for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
			_, rest = traceLine(rest, crlf)
		}
		if v := callIDValue(line, conts[:len(conts)-len(rest)], crlf); len(v) > 0 {
			id = v
		}
	}
	return id
}

// maybeCallID is a quick look at a header line's first bytes: false when
// it cannot be a Call-ID (most headers), true when callIDValue must say.
// A name may start with white space that sipgo trims (bytes.TrimSpace:
// ASCII controls and spaces, U+0085, U+00A0).
func maybeCallID(line []byte) bool {
	switch c := line[0]; {
	case c == 'c' || c == 'C':
		return len(line) >= 7 && line[1]|0x20 == 'a'
	case c == 'i' || c == 'I':
		return true
	default:
		return c <= ' ' || c >= 0x80
	}
}

// traceLine cuts the first line off b.
func traceLine(b []byte, crlf bool) (line, rest []byte) {
	for off := 0; crlf; {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return b, nil
		}
		if i += off; i > 0 && b[i-1] == '\r' {
			return b[:i-1], b[i+1:]
		}
		off = i + 1 // a bare LF is inside the line
	}
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.TrimSuffix(b, []byte("\r")), nil
	}
	return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+1:]
}

// callIDValue is the value of a header (its first line and its
// continuation lines) when it is a Call-ID, else nil.
func callIDValue(line, conts []byte, crlf bool) []byte {
	name, value, colon := bytes.Cut(line, []byte(":"))
	if !isCallIDName(bytes.TrimSpace(name)) {
		return nil // continuations would put a space into the name
	}
	if len(conts) > 0 {
		// sipgo joins the lines first, then finds the colon.
		name, value, colon = bytes.Cut(foldLines(line, conts, crlf), []byte(":"))
		if !isCallIDName(bytes.TrimSpace(name)) {
			return nil
		}
	}
	if !colon {
		return nil
	}
	return bytes.TrimSpace(value)
}

// foldLines joins a header's lines as sipgo does: each continuation line,
// its SP and HTAB trimmed, after one space.
func foldLines(line, conts []byte, crlf bool) []byte {
	out := append([]byte(nil), bytes.TrimRight(line, " \t")...)
	for len(conts) > 0 {
		var c []byte
		c, conts = traceLine(conts, crlf)
		out = append(append(out, ' '), bytes.Trim(c, " \t")...)
	}
	return out
}

// isCallIDName: "Call-ID" or "i", in any case (ASCII, as sipgo).
func isCallIDName(n []byte) bool {
	const name = "call-id"
	switch len(n) {
	case 1:
		return n[0] == 'i' || n[0] == 'I'
	case len(name):
		for i, c := range n {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != name[i] {
				return false
			}
		}
		return true
	}
	return false
}
