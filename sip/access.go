package sip

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// No open relay (DESIGN, edge security): a request that would leave the
// local domains — a static route, the default route, a preloaded Route, any
// target that is not a registered local user — is forwarded only for a
// trusted peer ([[peer]], by source network) or a local user who
// authenticated. What its From says does not matter: anyone can write any
// From.

// peerOf names the trusted peer req comes from, or "".
func (p *Proxy) peerOf(req *sip.Request) string {
	if len(p.peers) == 0 {
		return ""
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return ""
	}
	a := src.Addr().Unmap()
	for _, pe := range p.peers {
		for _, n := range pe.Prefixes {
			if n.Contains(a) {
				return pe.Name
			}
		}
	}
	return ""
}

// leaves reports whether a request would go anywhere but to a registered
// local user. An in-dialog request (To tag) leaves unless it belongs to a
// dialog sipanchor tracks or goes to an address sipanchor has received
// from: otherwise anyone could write a To tag and a Request-URI and have
// the request carried to any host.
func (p *Proxy) leaves(req *sip.Request, ts []target) bool {
	if inDialog(req) {
		return !p.knownDialog(req) && !p.reachedBefore(ts)
	}
	for _, t := range ts {
		if !t.local {
			return true
		}
	}
	return false
}

func (p *Proxy) knownDialog(req *sip.Request) bool {
	_, _, ok := p.dialogOf(req)
	return ok
}

// reachedBefore: every target is a registered contact or an address that
// has sent us something (a flow).
func (p *Proxy) reachedBefore(ts []target) bool {
	for _, t := range ts {
		if !t.local && p.flows.lookup(t.transport, t.dst) == nil {
			return false
		}
	}
	return len(ts) > 0
}
