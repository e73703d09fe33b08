package sip

import (
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sipanchor/config"
)

// The SIP trace: each call's messages, as received and sent on the wire,
// kept in memory for the API and the console's ladder ([trace]). The
// sockets sipanchor puts in front of sipgo record every message they pass
// (tracewire.go); a message is filed under its Call-ID, found by a scan of
// its headers, and one without is not kept. Memory is bounded three ways:
// [trace] calls (the call first seen longest ago goes first), [trace]
// messages per call (its first few, where the initial INVITE and its
// answers are, and its most recent), and traceMaxBytes per message.
//
// The packet path pays a header scan, a lookup in one of traceShards
// maps and a copy of the message under its call's own lock; only a
// message that starts a new call takes the lock that orders calls.

// TraceEntry is one SIP message sipanchor received or sent.
type TraceEntry struct {
	Time      time.Time `json:"time"`
	Dir       string    `json:"dir"`       // "in" (received) or "out" (sent)
	Transport string    `json:"transport"` // "udp" or "tcp"
	Local     string    `json:"local"`     // sipanchor's socket, IP:port
	Remote    string    `json:"remote"`    // the peer's, IP:port
	// Seq numbers the call's messages from 1: a gap is where messages
	// were dropped to keep the call within [trace] messages.
	Seq int `json:"seq"`
	// Size is the message's length on the wire; Message holds its first
	// traceMaxBytes bytes.
	Size    int    `json:"size"`
	Message string `json:"message"`
	// Error is why a message sent was not: it is recorded as it is handed
	// to the socket, so that whatever answers it comes after it.
	Error string `json:"error,omitempty"`
}

// Trace is the SIP messages of the call with that Call-ID, oldest first;
// nil when none is kept (never seen, dropped for newer calls, or [trace]
// calls = 0).
func (p *Proxy) Trace(callID string) []TraceEntry { return p.trace.entries(callID) }

type traceDir bool

const (
	traceIn  traceDir = false
	traceOut traceDir = true
)

func (d traceDir) String() string {
	if d == traceOut {
		return "out"
	}
	return "in"
}

const (
	// traceMaxBytes is how much of one message is kept: all of nearly
	// every message (an INVITE with an audio SDP is about 1 KiB).
	traceMaxBytes = 4096
	// traceKeepFirst is how many of a call's first messages are kept
	// whatever follows (at most half of [trace] messages).
	traceKeepFirst = 8
	traceShards    = 32
)

// tracer holds the calls' traces; nil when capture is off.
type tracer struct {
	perCall, keepFirst int
	maxCalls           int
	seed               maphash.Seed
	shards             [traceShards]traceShard

	budget int64        // bytes of kept messages, all calls together
	bytes  atomic.Int64 // held now

	mu    sync.Mutex   // orders calls by when they were first seen
	order []*callTrace // oldest first
}

type traceShard struct {
	mu    sync.Mutex
	calls map[string]*callTrace
	_     [48]byte // a cache line each: cores on other shards do not contend
}

// callTrace is one call's messages: its first keepFirst, then a ring of
// the most recent.
type callTrace struct {
	id    string
	shard *traceShard

	mu      sync.Mutex
	seen    int
	first   []traceRecord
	last    []traceRecord // a ring once full
	bytes   int64         // held by its records' copies
	dropped bool          // no longer kept: adds are not counted
}

type traceRecord struct {
	at            time.Time
	seq, size     int
	dir           traceDir
	transport     string
	local, remote netip.AddrPort
	msg           []byte // its own copy, reused when the slot is
	err           string
}

// newTracer is the trace [trace] asks for; nil when calls = 0.
func newTracer(cfg config.Trace) *tracer {
	if cfg.Calls <= 0 || cfg.Messages <= 0 {
		return nil
	}
	t := &tracer{perCall: cfg.Messages, keepFirst: min(traceKeepFirst, cfg.Messages/2), maxCalls: cfg.Calls, seed: maphash.MakeSeed(), budget: int64(cfg.Memory)}
	if t.budget <= 0 { // not set (config requires it): no byte bound
		t.budget = math.MaxInt64
	}
	for i := range t.shards {
		t.shards[i].calls = map[string]*callTrace{}
	}
	return t
}

// record files a message received (traceIn) or about to be sent
// (traceOut) under its Call-ID. msg is copied: it may be a socket's
// buffer.
func (t *tracer) record(dir traceDir, transport string, local, remote netip.AddrPort, msg []byte) traceMark {
	if t == nil {
		return traceMark{}
	}
	id := traceCallID(msg)
	if len(id) == 0 {
		return traceMark{}
	}
	c := t.call(id)
	seq := c.add(t, traceRecord{dir: dir, transport: transport, local: local, remote: remote}, msg)
	if t.bytes.Load() > t.budget {
		t.shrink()
	}
	return traceMark{t: t, c: c, seq: seq}
}

// shrink drops the oldest calls until the kept messages fit the budget
// (the newest call stays, whatever its size).
func (t *tracer) shrink() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.bytes.Load() > t.budget && len(t.order) > 1 {
		t.dropOldest()
	}
}

// dropOldest forgets the call first seen longest ago. Call with t.mu held.
func (t *tracer) dropOldest() {
	old := t.order[0]
	t.order[0] = nil
	t.order = t.order[1:]
	old.shard.mu.Lock()
	if old.shard.calls[old.id] == old {
		delete(old.shard.calls, old.id)
	}
	old.shard.mu.Unlock()
	old.mu.Lock()
	old.dropped = true
	t.bytes.Add(-old.bytes)
	old.bytes = 0
	old.mu.Unlock()
}

// traceMark is a message recorded, to say later that its send failed.
type traceMark struct {
	t   *tracer
	c   *callTrace // nil: not recorded
	seq int
}

// failed notes on the message that its send failed, if it is still kept.
func (m traceMark) failed(err error) {
	if m.c == nil {
		return
	}
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if r := m.c.slot(m.t, m.seq); r != nil && r.seq == m.seq {
		r.err = err.Error()
	}
}

// call is the trace of Call-ID id, made if there is none.
func (t *tracer) call(id []byte) *callTrace {
	sh := &t.shards[maphash.Bytes(t.seed, id)%traceShards]
	sh.mu.Lock()
	c := sh.calls[string(id)]
	sh.mu.Unlock()
	if c != nil {
		return c
	}
	return t.create(string(id), sh)
}

// create adds a call, dropping the oldest when there are maxCalls.
func (t *tracer) create(id string, sh *traceShard) *callTrace {
	t.mu.Lock()
	defer t.mu.Unlock()
	sh.mu.Lock()
	c := sh.calls[id]
	if c != nil { // another message of it made it meanwhile
		sh.mu.Unlock()
		return c
	}
	c = &callTrace{id: id, shard: sh}
	sh.calls[id] = c
	sh.mu.Unlock()
	t.order = append(t.order, c)
	for len(t.order) > t.maxCalls {
		t.dropOldest()
	}
	return c
}

// add appends a message, into the ring of the most recent once the first
// are kept, and returns its number.
func (c *callTrace) add(t *tracer, r traceRecord, msg []byte) int {
	r.size = len(msg)
	msg = msg[:min(len(msg), traceMaxBytes)]
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen++
	r.seq, r.at = c.seen, time.Now()
	var slot *traceRecord
	switch ring := t.perCall - t.keepFirst; {
	case len(c.first) < t.keepFirst:
		c.first = append(c.first, traceRecord{})
		slot = &c.first[len(c.first)-1]
	case len(c.last) < ring:
		c.last = append(c.last, traceRecord{})
		slot = &c.last[len(c.last)-1]
	default:
		slot = &c.last[(c.seen-1-t.keepFirst)%ring]
	}
	held := cap(slot.msg)
	r.msg = append(slot.msg[:0], msg...)
	*slot = r
	if !c.dropped {
		grown := int64(cap(r.msg) - held)
		c.bytes += grown
		t.bytes.Add(grown)
	}
	return r.seq
}

// slot is where message seq is kept, or was until a later one took its
// place; nil when it never was.
func (c *callTrace) slot(t *tracer, seq int) *traceRecord {
	switch i := seq - 1; {
	case i < len(c.first):
		return &c.first[i]
	case len(c.last) > 0:
		return &c.last[(i-t.keepFirst)%len(c.last)]
	}
	return nil
}

// entries is the trace of callID, oldest first; nil when there is none.
func (t *tracer) entries(callID string) []TraceEntry {
	if t == nil {
		return nil
	}
	sh := &t.shards[maphash.String(t.seed, callID)%traceShards]
	sh.mu.Lock()
	c := sh.calls[callID]
	sh.mu.Unlock()
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]TraceEntry, 0, len(c.first)+len(c.last))
	for _, r := range c.first {
		out = append(out, r.entry())
	}
	// The ring's oldest is the slot the next message will take.
	start := 0
	if len(c.last) > 0 {
		start = (c.seen - t.keepFirst) % len(c.last)
	}
	for i := range c.last {
		out = append(out, c.last[(start+i)%len(c.last)].entry())
	}
	return out
}

func (r traceRecord) entry() TraceEntry {
	return TraceEntry{Time: r.at, Dir: r.dir.String(), Transport: r.transport, Local: r.local.String(), Remote: r.remote.String(),
		Seq: r.seq, Size: r.size, Message: string(r.msg), Error: r.err}
}
