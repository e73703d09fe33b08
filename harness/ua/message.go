package ua

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// newID is a random token for Call-IDs and tags.
func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// via is the UA's Via: its local address, a new branch, and ;rport unless
// Faults.NoRport.
func (u *UA) via() *sip.ViaHeader {
	p := sip.NewParams()
	p.Add("branch", sip.GenerateBranch())
	if !u.cfg.Faults.NoRport {
		p.Add("rport", "")
	}
	return &sip.ViaHeader{
		ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(u.cfg.Transport),
		Host: u.addr.Addr().String(), Port: int(u.addr.Port()), Params: p,
	}
}

// contactURI is sip:User@<local address> (;transport=tcp over TCP): the
// private address, as a UA behind NAT writes it.
func (u *UA) contactURI() sip.Uri {
	uri := sip.Uri{Scheme: "sip", User: u.cfg.User, Host: u.addr.Addr().String(), Port: int(u.addr.Port())}
	if u.cfg.Transport == "tcp" {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", "tcp")
	}
	return uri
}

func (u *UA) contact() *sip.ContactHeader {
	return &sip.ContactHeader{Address: u.contactURI()}
}

// aor is the UA's address of record, sip:User@Domain.
func (u *UA) aor() sip.Uri { return sip.Uri{Scheme: "sip", User: u.cfg.User, Host: u.cfg.Domain} }

// targetURI reads a call target: a SIP URI, or a user of the UA's domain.
func (u *UA) targetURI(target string) (sip.Uri, error) {
	if !strings.Contains(target, ":") {
		target = "sip:" + target + "@" + u.cfg.Domain
	}
	var uri sip.Uri
	if err := sip.ParseUri(target, &uri); err != nil {
		return sip.Uri{}, fmt.Errorf("target %q: %w", target, err)
	}
	return uri, nil
}

// request builds a request with the headers every request of the UA has.
func (u *UA) request(method sip.RequestMethod, ruri sip.Uri, from *sip.FromHeader, to *sip.ToHeader,
	callID string, seq uint32, routes []sip.Uri) *sip.Request {
	req := sip.NewRequest(method, ruri)
	req.AppendHeader(u.via())
	for _, r := range routes {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(from)
	req.AppendHeader(to)
	id := sip.CallIDHeader(callID)
	req.AppendHeader(&id)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	req.AppendHeader(sip.NewHeader("User-Agent", "sipanchor-harness-ua"))
	req.SetTransport(strings.ToUpper(u.cfg.Transport))
	req.SetBody(nil) // Content-Length: 0 until a body is set
	return req
}

func fromHeader(uri sip.Uri, tag string) *sip.FromHeader {
	p := sip.NewParams()
	if tag != "" {
		p.Add("tag", tag)
	}
	return &sip.FromHeader{Address: uri, Params: p}
}

func toHeader(uri sip.Uri, tag string) *sip.ToHeader {
	p := sip.NewParams()
	if tag != "" {
		p.Add("tag", tag)
	}
	return &sip.ToHeader{Address: uri, Params: p}
}

// withSDP sets an SDP body.
func withSDP(m interface {
	AppendHeader(sip.Header)
	SetBody([]byte)
}, body []byte) {
	ct := sip.ContentTypeHeader("application/sdp")
	m.AppendHeader(&ct)
	m.SetBody(body)
}

// routeSet reads the Record-Route URIs of m, in order.
func routeSet(m interface{ GetHeaders(string) []sip.Header }) []sip.Uri {
	var out []sip.Uri
	for _, h := range m.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			out = append(out, *rr.Address.Clone())
		}
	}
	return out
}

func tagOf(p sip.HeaderParams) string { return p.GetOr("tag", "") }

func reasonFor(code int) string {
	switch code {
	case 180:
		return "Ringing"
	case 200:
		return "OK"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 482:
		return "Loop Detected"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 501:
		return "Not Implemented"
	case 603:
		return "Decline"
	}
	return "Status"
}
