package sip

import (
	"errors"
	"fmt"
	"net"

	"github.com/emiago/sipgo/sip"
)

// checkRequest applies RFC 3261 §16.3 request validation to what the parser
// accepted: the mandatory headers (§8.1.1) must be present and agree with
// the request line. The error text goes into the 400's reason phrase.
func checkRequest(req *sip.Request) error {
	switch {
	case req.Via() == nil:
		return errors.New("Missing Via")
	case req.From() == nil:
		return errors.New("Missing From")
	case req.To() == nil:
		return errors.New("Missing To")
	case req.CallID() == nil || *req.CallID() == "":
		return errors.New("Missing Call-ID")
	case req.CSeq() == nil:
		return errors.New("Missing CSeq")
	case req.CSeq().MethodName != req.Method:
		return errors.New("CSeq Method Mismatch")
	case req.Via().Params == nil || !hasBranch(req.Via()):
		// RFC 2543 clients without a branch: we cannot match transactions.
		return errors.New("Missing Via Branch")
	case req.Recipient.Host == "":
		return errors.New("Bad Request-URI")
	}
	if cl := req.ContentLength(); cl != nil && int(*cl) != len(req.Body()) {
		return errors.New("Content-Length Mismatch")
	}
	return nil
}

func hasBranch(v *sip.ViaHeader) bool {
	b, ok := v.Params.Get("branch")
	return ok && b != ""
}

// datagramFilter checks each UDP datagram before sipgo sees it. A message
// that does not parse, or a request without the headers a transaction needs,
// never reaches the transaction layer: a request that can be answered gets a
// stateless 400 from the socket it came in on, anything else is dropped and
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
	msg, err := f.parser.ParseSIP(data)
	var req *sip.Request
	if r, ok := msg.(*sip.Request); ok {
		req = r
	}
	if err == nil {
		if req == nil {
			return data, nil // responses are matched or dropped by the transaction layer
		}
		if err = checkRequest(req); err == nil {
			return data, nil
		}
	} else {
		err = parseReason(err)
	}
	f.bad(err.Error(), props.RemoteAddr)
	// Via and CSeq are what the sender matches a response with.
	if req != nil && req.Method != sip.ACK && req.Via() != nil && req.CSeq() != nil {
		res := sip.NewResponseFromRequest(req, sip.StatusBadRequest, err.Error(), nil)
		if pc := f.sockets[props.LocalAddr.String()]; pc != nil {
			// Answer where the packet came from: the Via may be unusable.
			_, _ = pc.WriteTo([]byte(res.String()), props.RemoteAddr)
		}
	}
	return nil, nil
}

// parseReason turns a parser error into a short reason phrase.
func parseReason(err error) error {
	switch {
	case errors.Is(err, sip.ErrParseReadBodyIncomplete):
		return errors.New("Content-Length Mismatch")
	case errors.Is(err, sip.ErrMessageTooLarge):
		return errors.New("Message Too Large")
	}
	return fmt.Errorf("Malformed Message")
}
