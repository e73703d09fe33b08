package sip

import (
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// statusError is a request check that decides a response other than 400:
// its status, reason phrase (Error) and one extra header line.
type statusError struct {
	code   int
	reason string
	header string // e.g. "Unsupported: foo"; "" for none
}

func (e *statusError) Error() string { return e.reason }

// checkProxyRules applies what RFC 3261 asks of a proxy before it routes
// (§8.2.1, §8.2.2, §16.3): a SIP version it speaks (505), a Request-URI
// scheme it can route (416), no Proxy-Require option it lacks (420), and
// single-valued headers present once (400).
func checkProxyRules(req *sip.Request) error {
	if v := req.SipVersion; v != "" && !strings.EqualFold(v, "SIP/2.0") {
		return &statusError{code: sip.StatusVersionNotSupported, reason: "Version Not Supported"}
	}
	if !routableScheme(req.Recipient.Scheme) {
		return &statusError{code: 416, reason: "Unsupported URI Scheme"}
	}
	var unsupported []string
	for _, h := range req.GetHeaders("Proxy-Require") {
		for _, tag := range strings.Split(h.Value(), ",") {
			if tag = strings.TrimSpace(tag); tag != "" {
				unsupported = append(unsupported, tag) // sipanchor supports no proxy extension
			}
		}
	}
	if len(unsupported) > 0 {
		return &statusError{code: 420, reason: "Bad Extension", header: "Unsupported: " + strings.Join(unsupported, ", ")}
	}
	for _, name := range []string{"Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length"} {
		if len(req.GetHeaders(name)) > 1 {
			return &statusError{code: sip.StatusBadRequest, reason: "Duplicate " + name}
		}
	}
	return nil
}

// rejectRequest answers a request that failed checkRequest: with the
// status its error decides, else 400 with the error as reason.
func (p *Proxy) rejectRequest(req *sip.Request, tx sip.ServerTransaction, err error) {
	var se *statusError
	if !errors.As(err, &se) {
		p.reply(req, tx, sip.StatusBadRequest, err.Error())
		return
	}
	res := sip.NewResponseFromRequest(req, se.code, se.reason, nil)
	if name, value, ok := strings.Cut(se.header, ": "); ok {
		res.AppendHeader(sip.NewHeader(name, value))
	}
	p.respond(req, tx, res)
}

func routableScheme(s string) bool {
	switch strings.ToLower(s) {
	case "sip", "sips", "tel":
		return true
	}
	return false
}

// requestLineStatus checks the version and the Request-URI scheme of a
// request line the parser could not take (505, 416), nil otherwise.
func requestLineStatus(line string) *statusError {
	parts := strings.Split(line, " ")
	if len(parts) != 3 || strings.HasPrefix(line, "SIP/") {
		return nil
	}
	if strings.HasPrefix(parts[2], "SIP/") && !strings.EqualFold(parts[2], "SIP/2.0") {
		return &statusError{code: sip.StatusVersionNotSupported, reason: "Version Not Supported"}
	}
	if scheme, _, ok := strings.Cut(parts[1], ":"); ok && schemeToken(scheme) && !routableScheme(scheme) {
		return &statusError{code: 416, reason: "Unsupported URI Scheme"}
	}
	return nil
}

// schemeToken: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC
// 3261 §25.1); "<sip" is a broken URI (400), not an unknown scheme (416).
func schemeToken(s string) bool {
	for i, c := range s {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}
