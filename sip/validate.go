package sip

import (
	"bytes"
	"errors"
	"net"
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
		// Methods are case-sensitive (RFC 3261 §7.1): see writtenMethod.
		return errors.New("CSeq Method Mismatch")
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

// writtenMethod is req's method as msg's request line writes it: sipgo's
// parser upper-cases it, but methods are case-sensitive tokens (RFC 3261
// §7.1, RFC 4475 §3.1.1.2 intmeth) to compare with the CSeq's and to
// forward as they are.
func writtenMethod(msg []byte, req *sip.Request) sip.RequestMethod {
	line := bytes.TrimLeft(msg, "\r\n")
	m, _, _ := bytes.Cut(line, []byte(" "))
	if !strings.EqualFold(string(m), string(req.Method)) {
		return req.Method
	}
	return sip.RequestMethod(m)
}

// restoreMethod undoes sipgo's upper-casing of a request's method where
// the request line is no longer at hand: screen compared the method as
// written with the CSeq's, so the CSeq's is how it was written. (Over a
// connection sipanchor opened nothing was screened, and a method that
// differs from its CSeq's only in case passes.)
func restoreMethod(req *sip.Request) {
	if cs := req.CSeq(); cs != nil && strings.EqualFold(string(cs.MethodName), string(req.Method)) {
		req.Method = cs.MethodName
	}
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
// stream) before sipgo's transaction layer sees it. A message to pass on
// is returned as sipgo is to parse it: with LWS normalised (lws.go) and,
// from an RFC 2543 client, with a transaction branch (rfc2543.go). A
// request that does not parse or lacks what a transaction needs is
// refused, and answered 400 naming what is wrong (RFC 3261 §16.3 step 1)
// whenever its top Via is readable; responses that do not parse, and
// requests without a usable Via or that are ACKs, are only refused.
func screen(p *sip.Parser, data []byte, stream bool) ([]byte, *rejection) {
	clean := normalizeLWS(data)
	msg, n, err := p.Parse(clean, stream)
	if stream && err == nil && n != len(clean) {
		// The stream framing saw a different end than the parser does
		// (a datagram may carry bytes past Content-Length, RFC 3261 §18.3).
		err = errFraming
	}
	var reason string
	if err == nil {
		req, ok := msg.(*sip.Request)
		if !ok {
			return clean, nil // responses are matched or dropped by the transaction layer
		}
		req.Method = writtenMethod(clean, req)
		cerr := checkRequest(req)
		if cerr == nil {
			return keyRFC2543(clean, req), nil
		}
		reason = cerr.Error()
		var se *statusError
		if errors.As(cerr, &se) {
			m := scanMessage(data)
			return nil, &rejection{reason: reason, reply: m.response(se.code, reason, se.header)}
		}
	}
	m := scanMessage(data)
	if err != nil {
		if se := requestLineStatus(m.start); se != nil {
			return nil, &rejection{reason: se.reason, reply: m.response(se.code, se.reason, se.header)}
		}
		reason = m.diagnose(err)
	}
	return nil, &rejection{reason: reason, reply: m.response(sip.StatusBadRequest, reason, "")}
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
		return v + ";tag=" + statelessTag + "." + randHex(4)
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
	sockets map[string]udpSocket // by local address
	bad     func(reason string, src net.Addr)
	shed    *queueShed // new calls while behind; nil: none
}

// udpSocket is a UDP listener as the filter answers from it: how long the
// datagram waited, and where answers are written (through the trace when
// it is on).
type udpSocket struct {
	stamped *stampedConn
	out     net.PacketConn
}

func (f *datagramFilter) filter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	if props.Transport != "UDP" {
		return data, nil
	}
	sock, ok := f.sockets[props.LocalAddr.String()]
	if ok {
		if reply := f.shed.reply(sock.stamped.Waited(), data); reply != nil {
			_, _ = sock.out.WriteTo(reply, props.RemoteAddr)
			return nil, nil
		}
	}
	if statelessACK(data) {
		return nil, nil // hop by hop, and its response left no state to end
	}
	out, r := screen(f.parser, data, false)
	if r == nil {
		return out, nil
	}
	f.bad(r.reason, props.RemoteAddr)
	if r.reply != nil && ok {
		_, _ = sock.out.WriteTo(r.reply, props.RemoteAddr)
	}
	return nil, nil
}
