package sip

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// flows remembers, for each address a message came from, the listener it
// came in on (RFC 5626's "flow", without the Outbound extension). A
// request toward an address we have received from leaves through that
// listener: it is the one the peer's NAT mapping, or a port forward in
// front of a loopback-bound listener, leads back through. Bindings and
// dialogs keep their listener too (prefer); this covers everything else
// that names a source address: Contact aliases, Via received/rport.
type flows struct {
	mu  sync.Mutex
	m   map[flowKey]flowEntry
	max int
}

type flowKey struct {
	transport string
	remote    netip.AddrPort
}

type flowEntry struct {
	l    *listener
	seen time.Time
}

// flowIdle is how long an address may stay silent before its flow is
// forgotten: longer than any NAT keeps a UDP mapping open unrefreshed.
const flowIdle = time.Hour

// maxFlows bounds the table: a flood from spoofed sources must not grow
// memory without end. Past it, new sources are not remembered and their
// requests fall back to the listener choice by address.
const maxFlows = 1 << 18

func newFlows() *flows { return &flows{m: map[flowKey]flowEntry{}, max: maxFlows} }

// learn records that a message from remote arrived on l.
func (f *flows) learn(transport string, remote netip.AddrPort, l *listener, now time.Time) {
	k := flowKey{transport, netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())}
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.m[k]; ok {
		if e.l != l || now.Sub(e.seen) > time.Second {
			f.m[k] = flowEntry{l, now}
		}
		return
	}
	if len(f.m) < f.max {
		f.m[k] = flowEntry{l, now}
	}
}

// lookup is the listener remote's messages last came in on, if known.
func (f *flows) lookup(transport string, remote netip.AddrPort) *listener {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[flowKey{transport, remote}].l
}

// expire forgets flows idle since before now-flowIdle.
func (f *flows) expire(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, e := range f.m {
		if now.Sub(e.seen) > flowIdle {
			delete(f.m, k)
		}
	}
}

// learnRead records the flow of every message sipgo reads, before the
// datagram filter and the parser see it.
func (p *Proxy) learnRead(props sip.TransportReadProps) {
	tr := strings.ToLower(props.Transport)
	local, ok1 := addrPortOf(props.LocalAddr)
	remote, ok2 := addrPortOf(props.RemoteAddr)
	if !ok1 || !ok2 {
		return
	}
	if l := p.listenerAt(tr, local); l != nil {
		p.flows.learn(tr, remote, l, time.Now())
	}
}

// listenerAt is the listener of transport bound at local (an exact bind,
// else a wildcard bind of that port).
func (p *Proxy) listenerAt(transport string, local netip.AddrPort) *listener {
	var wildcard *listener
	for _, l := range p.listeners {
		if l.transport != transport {
			continue
		}
		if l.local == local {
			return l
		}
		if l.local.Port() == local.Port() && l.local.Addr().IsUnspecified() {
			wildcard = l
		}
	}
	return wildcard
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.UDPAddr:
		ap = v.AddrPort()
	case *net.TCPAddr:
		ap = v.AddrPort()
	default:
		if a == nil {
			return ap, false
		}
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return ap, false
		}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
}

// seedFlows learns the flow of every binding restored at start: after a
// restart a registered UA is an address we have received from, through
// the listener it registered on, before it sends anything again.
func (p *Proxy) seedFlows() {
	now := time.Now()
	for _, b := range p.loc.All(now) {
		for _, l := range p.listeners {
			if l.key() == b.Local && b.Received.IsValid() {
				p.flows.learn(b.Transport, b.Received, l, now)
			}
		}
	}
}
