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
	shards [flowShards]flowShard
}

// flowShards spreads the table over independent locks: every datagram
// read learns its flow, and one lock would serialise all the readers.
const flowShards = 64

type flowShard struct {
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

func newFlows() *flows {
	f := &flows{}
	for i := range f.shards {
		f.shards[i] = flowShard{m: map[flowKey]flowEntry{}, max: maxFlows / flowShards}
	}
	return f
}

func (f *flows) shard(remote netip.AddrPort) *flowShard {
	a := remote.Addr().As16()
	h := uint32(remote.Port())
	for _, b := range a {
		h = h*31 + uint32(b)
	}
	return &f.shards[h%flowShards]
}

// learn records that a message from remote arrived on l.
func (f *flows) learn(transport string, remote netip.AddrPort, l *listener, now time.Time) {
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	k := flowKey{transport, remote}
	s := f.shard(remote)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[k]; ok {
		if e.l != l || now.Sub(e.seen) > time.Second {
			s.m[k] = flowEntry{l, now}
		}
		return
	}
	if len(s.m) < s.max {
		s.m[k] = flowEntry{l, now}
	}
}

// lookup is the listener remote's messages last came in on, if known.
func (f *flows) lookup(transport string, remote netip.AddrPort) *listener {
	s := f.shard(remote)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[flowKey{transport, remote}].l
}

// expire forgets flows idle since before now-flowIdle.
func (f *flows) expire(now time.Time) {
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if now.Sub(e.seen) > flowIdle {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
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
