package sip

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// checkRequest applies RFC 3261 §16.3 request validation to what the parser
// accepted: the mandatory headers (§8.1.1) must be present and agree with
// the request line. The error text goes into the 400's reason phrase.
func checkRequest(req *sip.Request) error {
	if err := checkProxyRules(req); err != nil {
		return err
	}
	switch {
	case req.Via() == nil:
		return errors.New("Missing Via")
	case req.From() == nil:
		return errors.New("Missing From")
	case !usableURI(req.From().Address):
		return errors.New("Bad From")
	case req.To() == nil:
		return errors.New("Missing To")
	case !usableURI(req.To().Address):
		return errors.New("Bad To")
	case req.CallID() == nil || *req.CallID() == "":
		return errors.New("Missing Call-ID")
	case req.CSeq() == nil:
		return errors.New("Missing CSeq")
	case req.CSeq().MethodName != req.Method:
		return errors.New("CSeq Method Mismatch")
	case req.Via().Params == nil || !hasBranch(req.Via()):
		// RFC 2543 clients without a branch: we cannot match transactions.
		return errors.New("Missing Via Branch")
	case req.Recipient.Host == "" && !strings.EqualFold(req.Recipient.Scheme, "tel"),
		!validPort(req.Recipient.Port):
		return errors.New("Bad Request-URI")
	case !routePortsValid(req):
		return errors.New("Bad Route")
	}
	if cl := req.ContentLength(); cl != nil && int(*cl) != len(req.Body()) {
		return errors.New("Content-Length Mismatch")
	}
	return nil
}

// routePortsValid: every Route entry names a port a socket can have.
func routePortsValid(req *sip.Request) bool {
	for _, h := range req.GetHeaders("Route") {
		if r, ok := h.(*sip.RouteHeader); ok && !validPort(r.Address.Port) {
			return false
		}
	}
	return true
}

// usableURI: a sip or sips URI names a host; other schemes (tel, ...) are
// taken as they are.
func usableURI(u sip.Uri) bool {
	s := strings.ToLower(u.Scheme)
	return (s != "sip" && s != "sips") || u.Host != ""
}

func hasBranch(v *sip.ViaHeader) bool {
	b, ok := v.Params.Get("branch")
	return ok && b != ""
}

// rejection is a message refused before the transaction layer: why, and
// the response to send back (nil when it cannot be answered).
type rejection struct {
	reason string
	reply  []byte
}

// errFraming: a stream message's end as framed is not where it parses to.
var errFraming = errors.New("framing disagrees with the parser")

// screen checks one whole message (a datagram, or one framed out of a TCP
// stream) before sipgo's transaction layer sees it, and returns nil for a
// message to pass on. A request that does not parse or lacks what a
// transaction needs is answered 400 naming what is wrong (RFC 3261 §16.3
// step 1) whenever its top Via is readable; responses that do not parse,
// and requests without a usable Via or that are ACKs, are only refused.
func screen(p *sip.Parser, data []byte, stream bool) *rejection {
	msg, n, err := p.Parse(data, stream)
	if stream && err == nil && n != len(data) {
		// The stream framing saw a different end than the parser does
		// (a datagram may carry bytes past Content-Length, RFC 3261 §18.3).
		err = errFraming
	}
	var reason string
	if err == nil {
		req, ok := msg.(*sip.Request)
		if !ok {
			return nil // responses are matched or dropped by the transaction layer
		}
		cerr := checkRequest(req)
		if cerr == nil {
			return nil
		}
		reason = cerr.Error()
		var se *statusError
		if errors.As(cerr, &se) {
			m := scanMessage(data)
			return &rejection{reason: reason, reply: m.response(se.code, reason, se.header)}
		}
	}
	m := scanMessage(data)
	if err != nil {
		if se := requestLineStatus(m.start); se != nil {
			return &rejection{reason: se.reason, reply: m.response(se.code, se.reason, se.header)}
		}
		reason = m.diagnose(err)
	}
	return &rejection{reason: reason, reply: m.response(sip.StatusBadRequest, reason, "")}
}

// rawMessage is a message cut into lines without sipgo's parser and
// tolerant of everything it rejects, so that a broken request can still
// be answered with what of it is readable.
type rawMessage struct {
	start   string
	headers []rawHeader
	body    []byte
	ended   bool // an empty line ended the headers
}

// rawHeader is one header line, continuation lines folded in (RFC 3261
// §7.3.1). A line without a colon has an empty name.
type rawHeader struct {
	name  string // as written
	value string
}

// canonical is the long form of a header name for the names sipgo parses
// (compact forms per RFC 3261 §7.3.3); others are returned as written.
func (h rawHeader) canonical() string {
	switch strings.ToLower(h.name) {
	case "v", "via":
		return "Via"
	case "f", "from":
		return "From"
	case "t", "to":
		return "To"
	case "i", "call-id":
		return "Call-ID"
	case "cseq":
		return "CSeq"
	case "l", "content-length":
		return "Content-Length"
	case "m", "contact":
		return "Contact"
	case "c", "content-type":
		return "Content-Type"
	case "max-forwards":
		return "Max-Forwards"
	case "route":
		return "Route"
	case "record-route":
		return "Record-Route"
	}
	return h.name
}

// scanMessage splits data at LF (a CR before it is dropped) into the start
// line, headers and body.
func scanMessage(data []byte) rawMessage {
	var m rawMessage
	rest := data
	first := true
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case first:
			m.start, first = string(line), false
		case len(line) == 0:
			m.ended, m.body = true, rest
			return m
		case (line[0] == ' ' || line[0] == '\t') && len(m.headers) > 0:
			h := &m.headers[len(m.headers)-1]
			h.value += " " + string(bytes.TrimSpace(line))
		default:
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				m.headers = append(m.headers, rawHeader{value: string(line)})
				continue
			}
			m.headers = append(m.headers, rawHeader{name: string(bytes.TrimSpace(name)), value: string(bytes.TrimSpace(value))})
		}
	}
	return m
}

// headerParsers are sipgo's, used one header at a time to find the one
// that failed the whole message.
var headerParsers = sip.HeadersParser(sip.DefaultHeadersParser())

// diagnose names what made sipgo's parser (which stops at the first
// problem, with err) refuse the message, for a 400's reason phrase.
func (m rawMessage) diagnose(err error) string {
	if errors.Is(err, sip.ErrMessageTooLarge) {
		return "Message Too Large"
	}
	if r := requestLineProblem(m.start); r != "" {
		return r
	}
	for _, h := range m.headers {
		if h.name == "" {
			return "Malformed Header"
		}
		if _, perr := headerParsers.ParseHeader(nil, []byte(h.name+": "+h.value)); perr != nil {
			return "Bad " + h.canonical()
		}
	}
	if m.ended && errors.Is(err, sip.ErrParseReadBodyIncomplete) {
		return "Content-Length Mismatch"
	}
	return "Malformed Message"
}

// requestLineProblem checks a Request-Line (RFC 3261 §7.1): method, URI and
// version separated by single spaces; "" when it is fine or not a request.
func requestLineProblem(line string) string {
	if strings.HasPrefix(line, "SIP/") {
		return ""
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 || parts[0] == "" || !strings.HasPrefix(parts[2], "SIP/") {
		return "Bad Request Line"
	}
	var u sip.Uri
	if err := sip.ParseUri(parts[1], &u); err != nil || u.Wildcard {
		return "Bad Request-URI"
	}
	return ""
}

// method is the request's method, "" for a response.
func (m rawMessage) method() string {
	if strings.HasPrefix(m.start, "SIP/") {
		return ""
	}
	method, _, _ := strings.Cut(m.start, " ")
	return strings.ToUpper(method)
}

// first is the value of the first header called name (canonical), if any.
func (m rawMessage) first(name string) (string, bool) {
	for _, h := range m.headers {
		if h.canonical() == name {
			return h.value, true
		}
	}
	return "", false
}

// answerable: a request other than ACK (which is never answered) whose top
// Via names a host, so the sender can match a response to it.
func (m rawMessage) answerable() bool {
	if mt := m.method(); mt == "" || mt == string(sip.ACK) {
		return false
	}
	v, ok := m.first("Via")
	if !ok {
		return false
	}
	hs, _ := headerParsers.ParseHeader(nil, []byte("Via: "+v))
	if len(hs) == 0 {
		return false
	}
	via, ok := hs[0].(*sip.ViaHeader)
	return ok && via.Host != ""
}

// response builds a stateless response (RFC 3261 §8.2.6) to an answerable
// request, nil otherwise: every Via and the From, To, Call-ID and CSeq are
// copied as received, and the To gets a tag when it parses without one.
func (m rawMessage) response(code int, reason, extra string) []byte {
	if !m.answerable() {
		return nil
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n")
	line := func(name, value string) {
		b.WriteString(name + ": " + strings.ReplaceAll(value, "\r", "") + "\r\n")
	}
	for _, h := range m.headers {
		if h.canonical() == "Via" {
			line("Via", h.value)
		}
	}
	for _, name := range []string{"From", "To", "Call-ID", "CSeq"} {
		v, ok := m.first(name)
		if !ok {
			continue
		}
		if name == "To" {
			v = withToTag(v)
		}
		line(name, v)
	}
	if extra != "" {
		b.WriteString(extra + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// withToTag adds a tag to a To value that parses and has none.
func withToTag(v string) string {
	hs, err := headerParsers.ParseHeader(nil, []byte("To: "+v))
	if err != nil || len(hs) != 1 {
		return v
	}
	if to, ok := hs[0].(*sip.ToHeader); ok && (to.Params == nil || !to.Params.Has("tag")) {
		return v + ";tag=" + randHex(4)
	}
	return v
}

// datagramFilter screens each UDP datagram before sipgo sees it: a refused
// request that can be answered gets its 400 from the socket it came in on
// (the Via may be unusable), anything else refused is dropped, and each is
// counted. Nothing here can stop the read loop: the filter never returns an
// error.
type datagramFilter struct {
	parser  *sip.Parser
	sockets map[string]net.PacketConn // by local address
	bad     func(reason string, src net.Addr)
}

func (f *datagramFilter) filter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	if props.Transport != "UDP" {
		return data, nil
	}
	r := screen(f.parser, data, false)
	if r == nil {
		return data, nil
	}
	f.bad(r.reason, props.RemoteAddr)
	if r.reply != nil {
		if pc := f.sockets[props.LocalAddr.String()]; pc != nil {
			_, _ = pc.WriteTo(r.reply, props.RemoteAddr)
		}
	}
	return nil, nil
}

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
		return &screenConn{Conn: c, l: l}, nil
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
}

func (c *screenConn) Read(b []byte) (int, error) {
	for len(c.out) == 0 {
		if c.frame() {
			continue
		}
		if c.err != nil {
			return 0, c.err
		}
		// Read straight into in, grown as a message needs: an idle
		// connection keeps a few KiB, not another 64 KiB buffer.
		c.in = slices.Grow(c.in, 4096)
		n, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
		c.in = c.in[:len(c.in)+n]
		if err != nil {
			c.err = err
		}
	}
	n := copy(b, c.out)
	c.out = c.out[n:]
	return n, nil
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
	if r := screen(c.l.parser, msg, true); r != nil {
		c.l.bad(r.reason, c.RemoteAddr())
		if r.reply != nil {
			_, _ = c.Conn.Write(r.reply)
		}
	} else {
		c.out = append(c.out[:0], msg...)
	}
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
}

// close refuses what is buffered, sends reply if any, and ends the stream:
// sipgo closes the connection on io.EOF.
func (c *screenConn) close(reason string, reply []byte) {
	c.l.bad(reason, c.RemoteAddr())
	if reply != nil {
		_, _ = c.Conn.Write(reply)
	}
	c.in, c.size, c.scanned = nil, 0, 0
	c.err = io.EOF
}

// looksSIP: a start line that is a status line or ends in a SIP version,
// so that even a broken Request-Line can be answered.
func looksSIP(line string) bool {
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
