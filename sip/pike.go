package sip

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// pike bans flooding sources, like Kamailio's pike module: a source IP that
// sends more than max requests within a window is banned for banTime, and
// whatever it sends until then is dropped before it is parsed. Only the
// first line of a message is looked at: responses and keepalives are not
// counted (a busy callee answering must not be banned). Trusted peers are
// exempt.
//
// Every datagram passes through admit, so the table is sharded by address:
// a packet takes only its shard's lock, for a map lookup and a few field
// updates. The table is bounded: each shard keeps its sources in least
// recently seen order and forgets the oldest when full.
type pike struct {
	window, banTime time.Duration
	max             int
	perShard        int
	exempt          []netip.Prefix
	log             *slog.Logger
	shards          [pikeShards]pikeShard

	droppedBanned atomic.Uint64 // messages from a banned source
	droppedRate   atomic.Uint64 // the request that crossed the limit
}

const pikeShards = 64

type pikeShard struct {
	mu         sync.Mutex
	m          map[netip.Addr]*source
	head, tail *source  // most and least recently seen
	_          [40]byte // keep shards' locks on separate cache lines
}

// source is what pike knows of one IP.
type source struct {
	addr       netip.Addr
	start      int64 // current window's start, unix ns
	count      int   // requests in the current window
	since      int64 // ban start, unix ns; 0 = not banned
	until      int64 // ban end
	hits       int   // requests counted when the ban began
	dropped    uint64
	seen       int64 // last message, unix ns
	prev, next *source
}

// verdict is what admit decides for one message.
type verdict uint8

const (
	pass verdict = iota
	dropBanned
	dropRate // this request crossed the limit: the source is now banned
)

// Ban is one banned source, for the control plane.
type Ban struct {
	IP       netip.Addr
	Since    time.Time
	Until    time.Time
	Requests int    // requests within the window that got it banned
	Dropped  uint64 // messages dropped since
}

func newPike(window, banTime time.Duration, maxRequests, maxSources int, exempt []netip.Prefix, log *slog.Logger) *pike {
	k := &pike{window: window, banTime: banTime, max: maxRequests, perShard: max(1, maxSources/pikeShards), exempt: exempt, log: log}
	for i := range k.shards {
		k.shards[i].m = map[netip.Addr]*source{}
	}
	return k
}

// shard picks an address's shard.
func (k *pike) shard(a netip.Addr) *pikeShard {
	b := a.As16()
	h := (binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])) * 0x9E3779B97F4A7C15
	return &k.shards[h>>58] // top 6 bits: 64 shards
}

// isRequest: a message whose first line is not a status line and that is
// not a keepalive (CRLFs, RFC 5626 §3.5.1).
func isRequest(data []byte) bool {
	if len(bytes.Trim(data, "\r\n")) == 0 {
		return false
	}
	return !bytes.HasPrefix(data, []byte("SIP/"))
}

// admit counts a message from a and says whether it may be read.
func (k *pike) admit(a netip.Addr, data []byte, now time.Time) verdict {
	if k == nil || k.max == 0 {
		return pass
	}
	a = a.Unmap()
	for _, p := range k.exempt {
		if p.Contains(a) {
			return pass
		}
	}
	req := isRequest(data)
	t := now.UnixNano()
	s := k.shard(a)
	s.mu.Lock()
	src := s.m[a]
	if src == nil {
		if !req {
			s.mu.Unlock()
			return pass // responses create no entry
		}
		src = s.insert(a, k.perShard)
		src.start = t
	} else {
		s.touch(src)
	}
	src.seen = t
	var unbanned *Ban
	if src.since != 0 {
		if t < src.until {
			src.dropped++
			s.mu.Unlock()
			k.droppedBanned.Add(1)
			return dropBanned
		}
		b := src.ban()
		unbanned = &b
		src.since, src.until, src.dropped = 0, 0, 0
		src.start, src.count = t, 0
	}
	if !req {
		s.mu.Unlock()
		k.logUnban(unbanned, "ban expired")
		return pass
	}
	if t-src.start >= int64(k.window) {
		src.start, src.count = t, 0
	}
	src.count++
	if src.count <= k.max {
		s.mu.Unlock()
		k.logUnban(unbanned, "ban expired")
		return pass
	}
	src.since, src.until, src.hits = t, t+int64(k.banTime), src.count
	n := src.count
	s.mu.Unlock()
	k.logUnban(unbanned, "ban expired")
	k.droppedRate.Add(1)
	k.log.Warn("source banned", "peer", a.String(), "requests", n, "window", k.window.String(), "ban_time", k.banTime.String())
	return dropRate
}

// banned reports whether a is banned now, without counting anything: a
// TCP connection from it is refused.
func (k *pike) banned(a netip.Addr, now time.Time) bool {
	if k == nil || k.max == 0 {
		return false
	}
	a = a.Unmap()
	s := k.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	src := s.m[a]
	return src != nil && src.since != 0 && now.UnixNano() < src.until
}

func (src *source) ban() Ban {
	return Ban{IP: src.addr, Since: time.Unix(0, src.since), Until: time.Unix(0, src.until), Requests: src.hits, Dropped: src.dropped}
}

func (k *pike) logUnban(b *Ban, why string) {
	if b != nil {
		k.log.Info("source unbanned", "peer", b.IP.String(), "reason", why, "dropped", b.Dropped)
	}
}

// insert adds a source as the most recently seen, forgetting the least
// recently seen one when the shard is full. Call locked.
func (s *pikeShard) insert(a netip.Addr, limit int) *source {
	if len(s.m) >= limit && s.tail != nil {
		s.remove(s.tail)
	}
	src := &source{addr: a}
	s.m[a] = src
	s.pushFront(src)
	return src
}

func (s *pikeShard) pushFront(src *source) {
	src.prev, src.next = nil, s.head
	if s.head != nil {
		s.head.prev = src
	}
	s.head = src
	if s.tail == nil {
		s.tail = src
	}
}

func (s *pikeShard) unlink(src *source) {
	if src.prev != nil {
		src.prev.next = src.next
	} else {
		s.head = src.next
	}
	if src.next != nil {
		src.next.prev = src.prev
	} else {
		s.tail = src.prev
	}
	src.prev, src.next = nil, nil
}

func (s *pikeShard) touch(src *source) {
	if s.head != src {
		s.unlink(src)
		s.pushFront(src)
	}
}

func (s *pikeShard) remove(src *source) {
	s.unlink(src)
	delete(s.m, src.addr)
}

// sweep lifts expired bans (logging each) and forgets sources that have
// been quiet for a whole window; the proxy's sweeper calls it each second.
func (k *pike) sweep(now time.Time) {
	if k == nil || k.max == 0 {
		return
	}
	t := now.UnixNano()
	var lifted []Ban
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		for src := s.tail; src != nil; {
			prev := src.prev
			switch {
			case src.since != 0 && t >= src.until:
				lifted = append(lifted, src.ban())
				s.remove(src)
			case src.since == 0 && t-src.seen >= int64(k.window):
				s.remove(src)
			}
			src = prev
		}
		s.mu.Unlock()
	}
	for i := range lifted {
		k.logUnban(&lifted[i], "ban expired")
	}
}

// Bans lists the sources banned now, oldest ban first.
func (k *pike) Bans(now time.Time) []Ban {
	if k == nil {
		return nil
	}
	t := now.UnixNano()
	var out []Ban
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		for _, src := range s.m {
			if src.since != 0 && t < src.until {
				out = append(out, src.ban())
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Ban) int { return a.Since.Compare(b.Since) })
	return out
}

// Unban lifts a's ban; false when it is not banned.
func (k *pike) Unban(a netip.Addr, now time.Time) bool {
	if k == nil {
		return false
	}
	a = a.Unmap()
	s := k.shard(a)
	s.mu.Lock()
	src := s.m[a]
	if src == nil || src.since == 0 || now.UnixNano() >= src.until {
		s.mu.Unlock()
		return false
	}
	b := src.ban()
	s.remove(src)
	s.mu.Unlock()
	k.logUnban(&b, "by API")
	return true
}

// size is the number of sources tracked.
func (k *pike) size() int {
	n := 0
	for i := range k.shards {
		s := &k.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// admitDatagram is pike's verdict on a UDP datagram: false to drop it.
func (p *Proxy) admitDatagram(from net.Addr, data []byte) bool {
	ap, ok := addrPortOf(from)
	return !ok || p.pike.admit(ap.Addr(), data, time.Now()) == pass
}

// admitStream is pike's verdict on one message framed out of a TCP
// stream: false to drop it and close the connection.
func (p *Proxy) admitStream(from net.Addr, msg []byte) bool { return p.admitDatagram(from, msg) }

// bannedConn: a connection from a banned source is closed at once.
func (p *Proxy) bannedConn(from net.Addr) bool {
	ap, ok := addrPortOf(from)
	return ok && p.pike.banned(ap.Addr(), time.Now())
}

// Bans lists the sources banned for flooding now.
func (p *Proxy) Bans() []Ban { return p.pike.Bans(time.Now()) }

// Unban lifts a source's ban; false when it is not banned.
func (p *Proxy) Unban(a netip.Addr) bool { return p.pike.Unban(a, time.Now()) }

// Dropped counts messages dropped unread by the flood bans: from banned
// sources, and requests that crossed the limit (each got its source banned).
func (p *Proxy) Dropped() (banned, rate uint64) {
	return p.pike.droppedBanned.Load(), p.pike.droppedRate.Load()
}
