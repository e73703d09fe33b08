package sip

import (
	"context"
	"errors"
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
	addrs   []netip.Addr
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
	now := time.Now()
	r.mu.Lock()
	e := r.cache[host]
	if e == nil || e.expired(now) {
		if len(r.cache) >= maxDNSEntries {
			r.evictLocked(now)
		}
		e = &dnsEntry{ready: make(chan struct{})}
		r.cache[host] = e
		go r.resolve(host, e)
	}
	r.mu.Unlock()
	t := time.NewTimer(r.wait)
	defer t.Stop()
	select {
	case <-e.ready:
		return e.addrs, e.err
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

func (r *resolver) resolve(host string, e *dnsEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := r.r.LookupNetIP(ctx, "ip", host)
	ttl := r.posTTL
	if err == nil && len(ips) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		ttl = r.negTTL
	}
	e.addrs, e.err, e.expires = ips, err, time.Now().Add(ttl)
	close(e.ready)
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
