package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Where a request goes (RFC 3261 §16.5): its Route, a Contact alias, the
// location service, static routes, the default route.

// target is one place a request is forwarded to.
type target struct {
	ruri      sip.Uri
	dst       netip.AddrPort
	transport string // "udp" or "tcp"
	prefer    string // listener key to send from, when it fits
	reuseOnly bool   // TCP: only over an existing connection (a NAT'd client)
	local     bool   // a registered binding of a local user: the request stays in our domains
}

func (t target) String() string { return t.transport + ":" + t.dst.String() }

// targets decides where a request goes (RFC 3261 §16.5), or the status to
// answer instead. Out of dialog, for a user in a served domain or at one of
// our own addresses (any domain when none is configured): the location
// service's bindings, else the first matching [[route]], else
// default_route, else 404 — so a trunk's call to sip:1234@<our address>
// reaches the PBX behind a route.
func (p *Proxy) targets(req *sip.Request) ([]target, int, string) {
	ruri := req.Recipient
	if r := req.Route(); r != nil {
		t, err := p.uriTarget(ruri, r.Address)
		if err != nil {
			return nil, sip.StatusServiceUnavailable, "Unresolvable Route"
		}
		return []target{t}, 0, ""
	}
	if t, ok, err := aliasTarget(ruri); ok {
		if err != nil {
			return nil, sip.StatusBadRequest, "Bad Alias"
		}
		return []target{t}, 0, ""
	}
	dialog := inDialog(req)
	if !dialog && ruri.User != "" && (len(p.domains) == 0 || p.isLocalDomain(ruri)) {
		if bs := p.loc.Lookup(aorOf(ruri), time.Now()); len(bs) > 0 {
			var ts []target
			for _, b := range bs {
				t, err := bindingTarget(b)
				if err != nil {
					p.log.Warn("unusable binding", "aor", b.AOR, "contact", b.Contact, "err", err)
					continue
				}
				ts = append(ts, t)
			}
			if len(ts) > 0 {
				return ts, 0, ""
			}
		}
	}
	if dialog && !p.isUs(ruri) {
		t, err := p.uriTarget(ruri, ruri)
		if err != nil {
			return nil, sip.StatusServiceUnavailable, "Unresolvable Request-URI"
		}
		return []target{t}, 0, ""
	}
	if sr, ok := p.matchRoute(ruri); ok {
		return p.routed(sr, ruri)
	}
	if p.defRoute != nil {
		return p.routed(*p.defRoute, ruri)
	}
	return nil, sip.StatusNotFound, "Not Found"
}

// uriTarget sends a request with Request-URI ruri toward next (the top
// Route, or ruri itself), resolving a host name through the cache.
func (p *Proxy) uriTarget(ruri, next sip.Uri) (target, error) {
	tr, explicit := "udp", false
	if v, ok := next.UriParams.Get("transport"); ok && v != "" {
		tr, explicit = strings.ToLower(v), true
	}
	port := next.Port
	if !validPort(port) {
		// sipgo reads any integer; uint16 would wrap 65536 to 0.
		return target{}, fmt.Errorf("%s: %w", next.String(), errBadPort)
	}
	host := strings.Trim(next.Host, "[]")
	a, err := netip.ParseAddr(host)
	if err != nil && port == 0 {
		// RFC 3263 §4.2: a name without a port is looked up by SRV first.
		dst, srvTr, found, serr := p.srvTarget(host, tr, explicit)
		if serr != nil {
			return target{}, serr
		}
		if found {
			return target{ruri: ruri, dst: dst, transport: srvTr}, nil
		}
	}
	if port == 0 {
		port = 5060
	}
	if err != nil {
		ips, lerr := p.dns.lookup(host)
		if lerr != nil {
			return target{}, fmt.Errorf("resolve %s: %w", host, lerr)
		}
		a = ips[0]
	}
	return target{ruri: ruri, dst: netip.AddrPortFrom(a.Unmap(), uint16(port)), transport: tr}, nil
}

// srvTarget resolves host's SRV records for the transport asked for, or,
// with none asked for, for UDP then TCP (RFC 3263 §4.1 without NAPTR, which
// Go's resolver cannot query), and the chosen record's address. found is
// false when there are no SRV records: the caller then goes by host's own
// address. A lookup still unanswered is an error, not a "none": falling
// back to the address would send the call elsewhere than the operator's
// DNS says.
func (p *Proxy) srvTarget(host, tr string, explicit bool) (dst netip.AddrPort, proto string, found bool, err error) {
	protos := []string{"udp", "tcp"}
	if explicit {
		protos = []string{tr}
	}
	for _, proto := range protos {
		srvs, lerr := p.dns.lookupSRV(proto, host)
		if errors.Is(lerr, errDNSWait) {
			return netip.AddrPort{}, "", false, fmt.Errorf("SRV of %s: %w", host, lerr)
		}
		if lerr != nil {
			continue
		}
		rec := pickSRV(srvs)
		name := strings.TrimSuffix(rec.Target, ".")
		ips, lerr := p.dns.lookup(name)
		if lerr != nil {
			return netip.AddrPort{}, "", false, fmt.Errorf("resolve %s (SRV of %s): %w", name, host, lerr)
		}
		return netip.AddrPortFrom(ips[0].Unmap(), rec.Port), proto, true, nil
	}
	return netip.AddrPort{}, "", false, nil
}

// bindingTarget reaches a registered contact at the address its REGISTER
// came from, through the listener it came to; a TCP client only over its
// own connection.
func bindingTarget(b Binding) (target, error) {
	var u sip.Uri
	if err := sip.ParseUri(b.Contact, &u); err != nil {
		return target{}, err
	}
	if !b.Received.IsValid() {
		return target{}, errors.New("binding has no source address")
	}
	return target{ruri: u, dst: b.Received, transport: b.Transport, prefer: b.Local, reuseOnly: b.Transport == "tcp" && b.NAT, local: true}, nil
}

// routed is a static route's target, or 503 when its host does not
// resolve (in time).
func (p *Proxy) routed(r staticRoute, ruri sip.Uri) ([]target, int, string) {
	t, err := p.uriTarget(ruri, r.to)
	if err != nil {
		p.log.Info("route not resolved", "ruri", ruri.String(), "err", err)
		return nil, sip.StatusServiceUnavailable, "Unresolvable Route"
	}
	return []target{t}, 0, ""
}

// validPort: a URI's port, 0 when it names none (sipgo reads any integer).
func validPort(p int) bool { return p >= 0 && p <= 65535 }
