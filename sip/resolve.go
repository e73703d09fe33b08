package sip

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// resolver turns next-hop host names into addresses off the request path.
// Each name is looked up by one background goroutine at a time; requests
// for it wait for that answer at most `wait`, then fail (503) without
// waiting on: a hanging DNS server costs each request a bounded wait, and
// the server a single query. Answers are kept for posTTL, failures for
// negTTL (Go's resolver does not expose record TTLs). Requests routed by
// IP address never come here.
type resolver struct {
	r      *net.Resolver
	wait   time.Duration
	posTTL time.Duration
	negTTL time.Duration

	mu    sync.Mutex
	cache map[string]*dnsEntry
}

type dnsEntry struct {
	ready   chan struct{} // closed when the lookup ended
	addrs   []netip.Addr  // an address lookup's answer
	srv     []*net.SRV    // an SRV lookup's answer, by priority
	err     error
	expires time.Time
}

var errDNSWait = errors.New("no DNS answer yet")

// maxDNSEntries bounds the cache; past it, expired entries go first.
const maxDNSEntries = 4096

// newResolver uses the system's resolver, or the DNS server at server
// ("IP:port") when it is set.
func newResolver(server string) *resolver {
	r := net.DefaultResolver
	if server != "" {
		r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}}
	}
	return &resolver{r: r, wait: time.Second, posTTL: 5 * time.Minute, negTTL: 30 * time.Second, cache: map[string]*dnsEntry{}}
}

// lookup returns host's addresses, from the cache or from a lookup that
// answers within r.wait.
func (r *resolver) lookup(host string) ([]netip.Addr, error) {
	e, err := r.entry(host, func(ctx context.Context, e *dnsEntry) error {
		ips, err := r.r.LookupNetIP(ctx, "ip", host)
		if err == nil && len(ips) == 0 {
			err = errors.New("no address")
		}
		e.addrs = ips
		return err
	})
	if err != nil {
		return nil, err
	}
	return e.addrs, nil
}

// lookupSRV returns the SRV records of _sip._proto.host (RFC 3263 §4.2),
// lowest priority first, the same way.
func (r *resolver) lookupSRV(proto, host string) ([]*net.SRV, error) {
	e, err := r.entry("_sip._"+proto+"."+host, func(ctx context.Context, e *dnsEntry) error {
		_, srvs, err := r.r.LookupSRV(ctx, "sip", proto, host)
		if err == nil && len(srvs) == 0 {
			err = errors.New("no SRV record")
		}
		e.srv = srvs
		return err
	})
	if err != nil {
		return nil, err
	}
	return e.srv, nil
}

// entry is key's cache entry once its lookup has ended: a cached one, or
// one fetch fills in the background and that ends within r.wait.
func (r *resolver) entry(key string, fetch func(ctx context.Context, e *dnsEntry) error) (*dnsEntry, error) {
	now := time.Now()
	r.mu.Lock()
	e := r.cache[key]
	if e == nil || e.expired(now) {
		if len(r.cache) >= maxDNSEntries {
			r.evictLocked(now)
		}
		e = &dnsEntry{ready: make(chan struct{})}
		r.cache[key] = e
		go r.fill(e, fetch)
	}
	r.mu.Unlock()
	t := time.NewTimer(r.wait)
	defer t.Stop()
	select {
	case <-e.ready:
		return e, e.err
	case <-t.C:
		return nil, errDNSWait
	}
}

// expired: an ended lookup past its time. One in flight never is.
func (e *dnsEntry) expired(now time.Time) bool {
	select {
	case <-e.ready:
		return now.After(e.expires)
	default:
		return false
	}
}

func (r *resolver) fill(e *dnsEntry, fetch func(ctx context.Context, e *dnsEntry) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := fetch(ctx, e)
	ttl := r.posTTL
	if err != nil {
		ttl = r.negTTL
	}
	e.err, e.expires = err, time.Now().Add(ttl)
	close(e.ready)
}

// pickSRV chooses among the records of the lowest priority, at random in
// proportion to their weights (RFC 2782), each time it is asked: the
// cached order would send every request to one target for the TTL.
func pickSRV(srvs []*net.SRV) *net.SRV {
	best := srvs[0].Priority
	total := 0
	for _, s := range srvs {
		if s.Priority < best {
			best = s.Priority
		}
	}
	var group []*net.SRV
	for _, s := range srvs {
		if s.Priority == best {
			group = append(group, s)
			total += int(s.Weight)
		}
	}
	if total == 0 {
		return group[rand.IntN(len(group))]
	}
	n := rand.IntN(total)
	for _, s := range group {
		if n < int(s.Weight) {
			return s
		}
		n -= int(s.Weight)
	}
	return group[len(group)-1]
}

func (r *resolver) evictLocked(now time.Time) {
	for h, e := range r.cache {
		if e.expired(now) {
			delete(r.cache, h)
		}
	}
	for h := range r.cache {
		if len(r.cache) < maxDNSEntries {
			return
		}
		delete(r.cache, h)
	}
}
