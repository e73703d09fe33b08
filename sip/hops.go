package sip

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// consumeRoutes applies RFC 3261 §16.4: a Request-URI that is our own
// Record-Route (a strict router upstream) is replaced by the last Route,
// then Route entries that name us are removed from the top.
func (p *Proxy) consumeRoutes(req *sip.Request) {
	routes := req.GetHeaders("Route")
	if len(routes) > 0 && p.isUs(req.Recipient) && req.Recipient.User == "" {
		if last, ok := routes[len(routes)-1].(*sip.RouteHeader); ok {
			req.Recipient = *last.Address.Clone()
			removeLast(req, "Route", len(routes))
		}
	}
	for {
		r := req.Route()
		if r == nil || !p.isUs(r.Address) {
			return
		}
		req.RemoveHeader("Route")
	}
}

// removeLast removes the n-th (last) header of a name.
func removeLast(req *sip.Request, name string, n int) {
	hs := req.GetHeaders(name)
	keep := make([]sip.Header, 0, len(hs)-1)
	for i, h := range hs {
		if i != n-1 {
			keep = append(keep, h)
		}
	}
	for range hs {
		req.RemoveHeader(name)
	}
	for _, h := range keep {
		req.AppendHeader(h)
	}
}

// looped applies RFC 3261 §16.3 step 4: a Via of ours whose loop hash
// equals h, this request's, means the request came back unchanged.
func (p *Proxy) looped(req *sip.Request, h string) bool {
	for _, hv := range req.GetHeaders("Via") {
		v, ok := hv.(*sip.ViaHeader)
		if !ok || v.Params == nil {
			continue
		}
		b, _ := v.Params.Get("branch")
		if !strings.HasPrefix(b, branchPrefix) {
			continue
		}
		if lh, _, _ := strings.Cut(strings.TrimPrefix(b, branchPrefix), "."); lh == h && p.isUs(sip.Uri{Host: v.Host, Port: v.Port}) {
			return true
		}
	}
	return false
}

const branchPrefix = "z9hG4bKsa"

// loopHash covers what a spiral changes and a loop does not (RFC 3261
// §16.6 step 8): Request-URI, Route set, tags, Call-ID and CSeq number.
func (p *Proxy) loopHash(req *sip.Request) string {
	var b strings.Builder
	b.WriteString(req.Recipient.String())
	for _, r := range req.GetHeaders("Route") {
		b.WriteString("|" + r.Value())
	}
	from, _ := req.From().Params.Get("tag")
	to := ""
	if req.To().Params != nil {
		to, _ = req.To().Params.Get("tag")
	}
	fmt.Fprintf(&b, "|%s|%s|%s|%d", from, to, callID(req), req.CSeq().SeqNo)
	return shortHash(b.String())
}
