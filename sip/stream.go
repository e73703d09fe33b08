package sip

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// screenListener gives sipgo TCP connections that frame the stream into
// messages themselves (RFC 3261 §18.3: by Content-Length) and screen each
// like a datagram, answering over the connection. A refused message whose
// end is known is skipped and the connection lives on; one whose end
// cannot be known (no usable Content-Length, too large, not SIP) is
// answered where possible and the connection closed.
type screenListener struct {
	net.Listener
	parser *sip.Parser
	bad    func(reason string, src net.Addr)
	// admit is the flood check of each message (false: drop it and end
	// the connection); refuse, of a new connection (true: close it).
	admit  func(src net.Addr, msg []byte) bool
	refuse func(src net.Addr) bool
	// hygiene bounds each connection's life; nil = no bounds.
	hygiene *streamHygiene
	trace   *tracer // nil = no capture
}

func (l *screenListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.refuse != nil && l.refuse(c.RemoteAddr()) {
			c.Close()
			continue
		}
		sc := &screenConn{Conn: c, l: l}
		if l.trace != nil {
			sc.local, _ = addrPortOf(c.LocalAddr())
			sc.remote, _ = addrPortOf(c.RemoteAddr())
		}
		if l.hygiene != nil && !l.hygiene.open(sc, time.Now()) {
			c.Close()
			continue
		}
		return sc, nil
	}
}

// screenConn is one accepted connection; only sipgo's reader calls Read.
type screenConn struct {
	net.Conn
	l   *screenListener
	in  []byte // read from the peer, not yet framed
	out []byte // screened bytes for sipgo
	err error  // returned once out is drained

	// The message at the start of in: its size once its headers are in,
	// and how far they were searched for their end before that.
	size, scanned int

	// With hygiene: when the last read returned, when the first byte of
	// the message at the start of in came (zero: none has), and when the
	// last whole message did (or the connection was accepted).
	readAt, begun, active time.Time
	local, remote         netip.AddrPort // remote: with hygiene or trace
	release               func()         // ends the per-source count
	closed                sync.Once
}

func (c *screenConn) Read(b []byte) (int, error) {
	for len(c.out) == 0 {
		if c.frame() {
			continue
		}
		if c.err != nil {
			return 0, c.err
		}
		c.fill()
	}
	n := copy(b, c.out)
	c.out = c.out[n:]
	return n, nil
}

// fill reads what the peer sends next into in, grown as a message needs
// (an idle connection keeps a few KiB, not another 64 KiB buffer), by the
// deadline hygiene sets.
func (c *screenConn) fill() {
	h := c.l.hygiene
	if h != nil {
		_ = c.Conn.SetReadDeadline(h.deadline(c))
	}
	c.in = slices.Grow(c.in, 4096)
	n, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
	c.in = c.in[:len(c.in)+n]
	if h != nil {
		c.readAt = time.Now()
		c.clock()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			h.timedOut(c, c.readAt)
			return
		}
	}
	if err != nil {
		c.err = err
	}
}

// clock starts the message clock when the first byte of a message is in
// in (it came with the last read), and stops it when none is.
func (c *screenConn) clock() {
	if len(bytes.TrimLeft(c.in, "\r\n")) == 0 {
		c.begun = time.Time{}
	} else if c.begun.IsZero() {
		c.begun = c.readAt
	}
}

// frame moves one unit (a run of keepalive CRLFs or one accepted message)
// from in to out, or refuses one message; it reports whether it did
// anything, false when it needs more bytes.
func (c *screenConn) frame() bool {
	if len(c.in) == 0 {
		return false
	}
	if n := len(c.in) - len(bytes.TrimLeft(c.in, "\r\n")); n > 0 {
		if n == len(c.in) && n < 4 {
			return false // a ping may be arriving a byte at a time
		}
		// RFC 3261 §7.5: line ends before a start line are ignored; a
		// double CRLF is an RFC 5626 §3.5.1 ping, which sipgo answers
		// when it reads one on its own.
		if bytes.Contains(c.in[:n], []byte("\r\n\r\n")) {
			c.out = append(c.out[:0], "\r\n\r\n"...)
		}
		c.consume(n)
		return true
	}
	if c.size == 0 {
		if !c.sized() {
			return false // more bytes needed
		}
		if c.size == 0 {
			return true // refused, the stream has ended
		}
	}
	if len(c.in) < c.size {
		return false
	}
	msg := c.in[:c.size]
	if c.l.admit != nil && !c.l.admit(c.RemoteAddr(), msg) {
		c.in, c.size, c.scanned = nil, 0, 0
		c.err = io.EOF // sipgo closes the connection
		return true
	}
	c.traced(traceIn, msg)
	if out, r := screen(c.l.parser, msg, true); r != nil {
		c.l.bad(r.reason, c.RemoteAddr())
		if r.reply != nil {
			c.send(r.reply)
		}
	} else {
		c.out = append(c.out[:0], out...)
	}
	c.active = c.readAt // a keepalive alone keeps nothing open
	c.consume(c.size)
	return true
}

// sized finds the size of the message at the start of in from its start
// line and headers, remembering how far it looked so that a peer sending a
// byte at a time costs no rescans. It reports false when it needs more
// bytes; true when the size is known, or when it cannot be known and the
// message was refused and the stream ended (size stays 0).
func (c *screenConn) sized() bool {
	limit := c.l.parser.MaxMessageLength
	if c.scanned == 0 {
		i := bytes.IndexByte(c.in, '\n')
		if i < 0 {
			if len(c.in) > limit {
				c.close("Message Too Large", nil)
				return true
			}
			return false
		}
		if !looksSIP(string(bytes.TrimSuffix(c.in[:i], []byte("\r")))) {
			c.close("Not SIP", nil)
			return true
		}
		c.scanned = i
	}
	end := bytes.Index(c.in[c.scanned:], []byte("\r\n\r\n"))
	if end < 0 {
		c.scanned = max(c.scanned, len(c.in)-3)
		if len(c.in) > limit {
			c.close("Message Too Large", scanMessage(c.in).response(sip.StatusMessageTooLarge, "Message Too Large", ""))
			return true
		}
		return false
	}
	end += c.scanned + 4
	head := scanMessage(c.in[:end])
	cl, reason := head.contentLength()
	switch {
	case reason != "":
		c.close(reason, head.response(sip.StatusBadRequest, reason, ""))
		return true
	case end+cl > limit:
		c.close("Message Too Large", head.response(sip.StatusMessageTooLarge, "Message Too Large", ""))
		return true
	}
	c.size = end + cl
	return true
}

func (c *screenConn) consume(n int) {
	c.in = append(c.in[:0], c.in[n:]...)
	c.size, c.scanned = 0, 0
	c.clock()
}

// close refuses what is buffered, sends reply if any, and ends the stream:
// sipgo closes the connection on io.EOF.
func (c *screenConn) close(reason string, reply []byte) {
	c.l.bad(reason, c.RemoteAddr())
	if reply != nil {
		c.traced(traceIn, c.in) // what came of the message it answers
		c.send(reply)
	}
	c.in, c.size, c.scanned = nil, 0, 0
	c.err = io.EOF
}

// looksSIP: a start line that is a status line or ends in a SIP version,
// so that even a broken Request-Line can be answered.
func looksSIP(line string) bool {
	// Trailing white space (RFC 4475 trws) is a bad Request-Line, to be
	// answered 400, not a stream that is not SIP.
	line = strings.TrimRight(line, " \t")
	if strings.HasPrefix(line, "SIP/") {
		return true
	}
	i := strings.LastIndexByte(line, ' ')
	return i > 0 && strings.HasPrefix(line[i+1:], "SIP/")
}

// contentLength is the body size a stream message declares (RFC 3261
// §18.3, §20.14), or the reason it has none that can be used: over a
// stream it is mandatory, and several must agree.
func (m rawMessage) contentLength() (int, string) {
	n, seen := -1, false
	for _, h := range m.headers {
		if h.canonical() != "Content-Length" {
			continue
		}
		v, err := strconv.ParseUint(h.value, 10, 31)
		if err != nil || (seen && int(v) != n) {
			return 0, "Bad Content-Length"
		}
		n, seen = int(v), true
	}
	if !seen {
		return 0, "Missing Content-Length"
	}
	return n, ""
}
