package sip

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// NAT traversal for in-dialog requests, the way Kamailio's
// add_contact_alias/handle_ruri_alias do it: when a UA's Contact does not
// name the address its packets come from, the Contact we pass on gets
// ";alias=IP~PORT~TRANSPORT" with the real source. The other UA sends its
// in-dialog requests to that Contact; when one reaches us, the alias is
// removed from the Request-URI and the request goes to the address in it,
// over the UA's own connection for TCP.

const aliasParam = "alias"

// addAlias adds the alias parameter to msg's Contact when the Contact
// differs from src, the address msg came from over transport.
func addAlias(msg interface{ GetHeader(string) sip.Header }, src string, transport string) {
	hc := msg.GetHeader("Contact")
	c, ok := hc.(*sip.ContactHeader)
	if !ok || c.Address.Wildcard || c.Address.Host == "" {
		return
	}
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if c.Address.UriParams == nil {
		c.Address.UriParams = sip.NewParams()
	}
	if c.Address.UriParams.Has(aliasParam) {
		return
	}
	if transport == "udp" {
		port := c.Address.Port
		if port == 0 {
			port = 5060
		}
		if a, err := netip.ParseAddr(strings.Trim(c.Address.Host, "[]")); err == nil && netip.AddrPortFrom(a.Unmap(), uint16(port)) == ap {
			return // reachable as written
		}
	}
	c.Address.UriParams.Add(aliasParam, fmt.Sprintf("%s~%d~%s", ap.Addr(), ap.Port(), transport))
}

// aliasTarget reads and removes the alias of a Request-URI; ok reports
// whether there was one.
func aliasTarget(ruri sip.Uri) (t target, ok bool, err error) {
	v, has := ruri.UriParams.Get(aliasParam)
	if !has {
		return target{}, false, nil
	}
	parts := strings.Split(v, "~")
	if len(parts) != 3 {
		return target{}, true, errBadAlias
	}
	a, err := netip.ParseAddr(parts[0])
	if err != nil {
		return target{}, true, errBadAlias
	}
	port, err := strconv.Atoi(parts[1])
	if err != nil || port < 1 || port > 65535 {
		return target{}, true, errBadAlias
	}
	tr := strings.ToLower(parts[2])
	if tr != "udp" && tr != "tcp" {
		return target{}, true, errBadAlias
	}
	clean := *ruri.Clone()
	clean.UriParams.Remove(aliasParam)
	return target{ruri: clean, dst: netip.AddrPortFrom(a.Unmap(), uint16(port)), transport: tr, reuseOnly: tr == "tcp"}, true, nil
}

// sweep removes expired bindings once a second.
func (p *Proxy) sweep(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p.flows.expire(now)
			p.pike.sweep(now)
			if p.auth != nil {
				p.auth.counts.prune(now)
			}
			gone, err := p.loc.Expire(ctx, now)
			if err != nil && ctx.Err() == nil {
				p.log.Error("expiring bindings failed", "err", err)
			}
			for _, b := range gone {
				p.log.Info("binding expired", "aor", b.AOR, "contact", b.Contact)
			}
		}
	}
}

// keepalive pings every UDP binding behind NAT with OPTIONS each interval;
// a binding that leaves keepalive_failures pings in a row unanswered is
// removed. Any response counts as an answer: the UA is there.
func (p *Proxy) keepalive(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	wait := min(every, 5*time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var wg sync.WaitGroup
		for _, b := range p.loc.All(time.Now()) {
			if !b.NAT || b.Transport != "udp" {
				continue
			}
			wg.Go(func() {
				answered := p.ping(ctx, b, wait)
				if ctx.Err() != nil {
					return
				}
				n := p.loc.keepaliveResult(b.AOR, b.Contact, answered)
				if n >= p.cfg.NAT.KeepaliveFailures {
					if ok, err := p.loc.Remove(ctx, b.AOR, b.Contact); err != nil {
						p.log.Error("removing dead binding failed", "aor", b.AOR, "err", err)
					} else if ok {
						p.log.Warn("binding removed: keepalives unanswered", "aor", b.AOR, "contact", b.Contact, "received", b.Received.String(), "failures", n)
					}
				}
			})
		}
		wg.Wait()
	}
}

// ping sends one OPTIONS to a binding and reports whether anything answered
// within wait.
func (p *Proxy) ping(ctx context.Context, b Binding, wait time.Duration) bool {
	t, err := bindingTarget(b)
	if err != nil {
		return false
	}
	out, err := p.outbound(t.transport, t.dst, t.prefer)
	if err != nil {
		return false
	}
	req := sip.NewRequest(sip.OPTIONS, t.ruri)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "keepalive", Host: out.host, Port: out.port}, Params: sip.NewParams()}
	from.Params.Add("tag", randHex(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: t.ruri, Params: sip.NewParams()})
	cid := sip.CallIDHeader("ka-" + randHex(12))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	p.addVia(req, out, t, branchPrefix+"ka."+randHex(8))
	tx, err := p.cli.TransactionRequest(ctx, req, prebuilt)
	if err != nil {
		return false
	}
	defer tx.Terminate()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-tx.Responses():
		return true
	case <-tx.Done():
		return false
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}
