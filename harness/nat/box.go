package nat

import (
	"cmp"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Box is a running NAT box. Its methods are safe for concurrent use.
type Box struct {
	cfg    Config
	view   netip.Prefix
	log    *slog.Logger
	inside map[netip.Addr]bool

	mu       sync.Mutex
	closed   bool
	views    map[netip.Addr]netip.Addr // outside IP → its view IP
	outs     map[netip.Addr]netip.Addr // view IP → outside IP
	udpViews map[netip.AddrPort]*udpView
	tcpViews map[netip.AddrPort]*net.TCPListener
	udpMaps  map[mapKey]*udpMapping
	tcpMaps  map[mapKey]*tcpMapping
	splices  map[*splice]bool
	failed   map[netip.AddrPort]bool // views that could not be bound, logged once

	n    counters
	wg   sync.WaitGroup
	done chan struct{} // closed by Close
}

// mapKey is what a mapping is for: the inside endpoint, and as much of
// the destination as the mapping behaviour looks at.
type mapKey struct {
	inside netip.AddrPort
	dest   netip.AddrPort
}

// key is the mapping key of a packet from src to dst (RFC 4787 §4.1).
func (b *Box) key(src, dst netip.AddrPort) mapKey {
	switch b.cfg.Mapping {
	case EndpointIndependent:
		return mapKey{inside: src}
	case AddressDependent:
		return mapKey{inside: src, dest: netip.AddrPortFrom(dst.Addr(), 0)}
	}
	return mapKey{inside: src, dest: dst}
}

// Mapping is one of the box's mappings, as Mappings reports it.
type Mapping struct {
	Proto  string         // "udp" or "tcp"
	Inside netip.AddrPort // the inside host's endpoint
	Public netip.AddrPort // what the outside sees
	// Dest is what the mapping is for besides Inside, per the mapping
	// behaviour: zero (endpoint-independent), an IP with port 0
	// (address-dependent) or an endpoint (address-and-port-dependent).
	Dest netip.AddrPort
	Idle time.Duration // since the last outbound packet (UDP only)
}

// Stats counts what the box did, since New.
type Stats struct {
	Mapped         uint64 // mappings created, UDP and TCP
	Expired        uint64 // UDP mappings removed by UDPTimeout
	Filtered       uint64 // inbound datagrams the filtering behaviour dropped
	Unmapped       uint64 // inbound datagrams for a mapping that had just expired or moved
	Hairpinned     uint64 // datagrams from an inside host to the box's public address, looped back
	HairpinDropped uint64 // the same with Hairpin off, and TCP connections to it: dropped
	Stranger       uint64 // datagrams and connections on a view from a host that is not inside
	Rewritten      uint64 // SIP messages whose text the box changed
}

type counters struct {
	mapped, expired, filtered, unmapped, hairpinned, hairpinDropped, stranger, rewritten atomic.Uint64
}

// New starts a box with no mappings and no views.
func New(cfg Config) (*Box, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	view, err := claimView(cfg)
	if err != nil {
		return nil, err
	}
	b := &Box{
		cfg: cfg, view: view, log: cfg.Log.With("nat_public", cfg.Public.String()),
		inside: map[netip.Addr]bool{}, views: map[netip.Addr]netip.Addr{}, outs: map[netip.Addr]netip.Addr{},
		udpViews: map[netip.AddrPort]*udpView{}, tcpViews: map[netip.AddrPort]*net.TCPListener{},
		udpMaps: map[mapKey]*udpMapping{}, tcpMaps: map[mapKey]*tcpMapping{}, splices: map[*splice]bool{},
		failed: map[netip.AddrPort]bool{},
		done:   make(chan struct{}),
	}
	for _, a := range cfg.Inside {
		b.inside[a] = true
	}
	b.wg.Add(1)
	go b.sweep()
	b.log.Info("nat box up", "mapping", cfg.Mapping, "filtering", cfg.Filtering, "inside", cfg.Inside,
		"view", view, "udp_timeout", cfg.UDPTimeout, "port_preservation", cfg.PortPreservation,
		"hairpin", cfg.Hairpin, "broken_alg", cfg.BrokenALG)
	return b, nil
}

// Public is the box's outside IP.
func (b *Box) Public() netip.Addr { return b.cfg.Public }

// ViewPrefix is where the box's inside hosts see the outside world.
func (b *Box) ViewPrefix() netip.Prefix { return b.view }

// Stats is a snapshot of the box's counters.
func (b *Box) Stats() Stats {
	return Stats{
		Mapped: b.n.mapped.Load(), Expired: b.n.expired.Load(), Filtered: b.n.filtered.Load(),
		Unmapped: b.n.unmapped.Load(), Hairpinned: b.n.hairpinned.Load(), HairpinDropped: b.n.hairpinDropped.Load(),
		Stranger: b.n.stranger.Load(), Rewritten: b.n.rewritten.Load(),
	}
}

// Mappings is a snapshot of the box's live mappings, UDP then TCP, by
// inside endpoint.
func (b *Box) Mappings() []Mapping {
	now := time.Now()
	b.mu.Lock()
	out := make([]Mapping, 0, len(b.udpMaps)+len(b.tcpMaps))
	for k, m := range b.udpMaps {
		if !m.expired(now, b.cfg.UDPTimeout) {
			out = append(out, Mapping{Proto: "udp", Inside: k.inside, Dest: k.dest, Public: m.public(), Idle: m.idle(now)})
		}
	}
	for k, m := range b.tcpMaps {
		out = append(out, Mapping{Proto: "tcp", Inside: k.inside, Dest: k.dest, Public: m.public})
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y Mapping) int {
		return cmp.Or(cmp.Compare(x.Proto, y.Proto), x.Inside.Compare(y.Inside), x.Dest.Compare(y.Dest))
	})
	return out
}

// sweep removes expired UDP mappings, a few times per UDPTimeout; packets
// also check the timeout themselves, so it only frees their sockets.
func (b *Box) sweep() {
	defer b.wg.Done()
	every := min(max(b.cfg.UDPTimeout/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case now := <-t.C:
			b.mu.Lock()
			for _, m := range b.udpMaps {
				if m.expired(now, b.cfg.UDPTimeout) {
					b.expireLocked(m)
				}
			}
			b.mu.Unlock()
		}
	}
}

// Close releases every socket and goroutine of the box.
func (b *Box) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	var closers []interface{ Close() error }
	for _, v := range b.udpViews {
		closers = append(closers, v.conn)
	}
	for _, l := range b.tcpViews {
		closers = append(closers, l)
	}
	for _, m := range b.udpMaps {
		closers = append(closers, m.conn)
	}
	for s := range b.splices {
		closers = append(closers, s.in, s.out)
	}
	b.mu.Unlock()
	var errs []error
	for _, c := range closers {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	b.wg.Wait()
	releaseView(b.view)
	b.log.Info("nat box closed", "stats", b.Stats())
	return errors.Join(errs...)
}
