package sip

import (
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Limit is why a new call was refused with 503.
type Limit uint8

const (
	LimitUnknown        Limit = iota
	LimitCalls                // max_calls: calls at once
	LimitCallsPerSource       // max_calls_per_source
	LimitCPS                  // max_cps: new calls per second
	LimitOverload             // max_pending_invites: more INVITEs being worked on than that
	LimitCallsPerPeer         // [[peer]] max_calls
	LimitCallsPerUser         // max_calls_per_user (486, not 503)
	LimitQueue                // max_queue_delay: the INVITE waited longer than that to be read
	limitCount
)

func (l Limit) String() string {
	switch l {
	case LimitCalls:
		return "calls"
	case LimitCallsPerSource:
		return "calls_per_source"
	case LimitCPS:
		return "cps"
	case LimitOverload:
		return "overload"
	case LimitCallsPerPeer:
		return "calls_per_peer"
	case LimitCallsPerUser:
		return "calls_per_user"
	case LimitQueue:
		return "queue"
	}
	return "unknown"
}

// Limits lists every Limit, for metrics.
func Limits() []Limit {
	return []Limit{LimitCalls, LimitCallsPerSource, LimitCPS, LimitOverload, LimitCallsPerPeer, LimitCallsPerUser, LimitQueue}
}

// callCounter is what the limits read of the live calls; the dialog
// layer implements it.
type callCounter interface {
	Count() int
	CountFrom(a netip.Addr) int
	CountPeer(name string) int
	CountUser(aor string) int
}

// callLimits decides whether a new call (an initial INVITE) is taken on.
// A refused one is answered 503 with Retry-After (RFC 3261 §21.5.4), never
// dropped: a caller retries later instead of retransmitting now.
type callLimits struct {
	maxCalls, perSource int
	perUser             int
	maxPending          int64
	retryAfter          string      // seconds
	calls               callCounter // nil: calls are not counted
	cps                 *tokenBucket

	pending atomic.Int64 // INVITEs between arrival and being forwarded
	refused [limitCount]atomic.Uint64
}

// admit takes a new call from src on, or says which limit it hits and the
// Retry-After to answer with. Calls are counted as the dialog layer has
// them when the INVITE arrives: INVITEs arriving together may pass
// max_calls by the few still pending (max_pending_invites bounds those). A call taken on holds a pending slot until
// release is called (it may be called more than once).
func (l *callLimits) admit(src netip.Addr, now time.Time) (release func(), hit Limit, retry string) {
	if l.maxPending > 0 {
		if l.pending.Add(1) > l.maxPending {
			l.pending.Add(-1)
			return nil, l.refuse(LimitOverload), l.retryAfter
		}
		var once sync.Once
		release = func() { once.Do(func() { l.pending.Add(-1) }) }
	} else {
		release = func() {}
	}
	refuse := func(why Limit, retry string) (func(), Limit, string) {
		release()
		return nil, l.refuse(why), retry
	}
	if l.calls != nil {
		if l.maxCalls > 0 && l.calls.Count() >= l.maxCalls {
			return refuse(LimitCalls, l.retryAfter)
		}
		if l.perSource > 0 && l.calls.CountFrom(src) >= l.perSource {
			return refuse(LimitCallsPerSource, l.retryAfter)
		}
	}
	if l.cps != nil && !l.cps.take(now) {
		// A token comes back within a second.
		return refuse(LimitCPS, "1")
	}
	return release, LimitUnknown, ""
}

func (l *callLimits) refuse(why Limit) Limit {
	l.refused[why].Add(1)
	return why
}

// tokenBucket allows rate events a second, in bursts of up to rate.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate int) *tokenBucket {
	return &tokenBucket{rate: float64(rate), tokens: float64(rate)}
}

func (b *tokenBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// admitCall applies the call limits to an initial INVITE; a refused one
// is answered 503 here. The release function ends its pending time: call
// it once the INVITE is forwarded or answered.
func (p *Proxy) admitCall(req *sip.Request, tx sip.ServerTransaction) (func(), bool) {
	src, _ := netip.ParseAddrPort(req.Source())
	release, hit, retry := p.limits.admit(src.Addr(), time.Now())
	if hit == LimitUnknown {
		return release, true
	}
	if n := p.limits.refused[hit].Load(); n == 1 || n%1000 == 0 {
		p.log.Warn("new call refused: limit reached", "limit", hit.String(), "call_id", callID(req), "peer", req.Source(), "total", n)
	}
	res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
	res.AppendHeader(sip.NewHeader("Retry-After", retry))
	p.respond(req, tx, res)
	return nil, false
}

// Refused counts the new calls answered 503 for each limit.
func (p *Proxy) Refused() map[Limit]uint64 {
	out := map[Limit]uint64{}
	for _, l := range Limits() {
		out[l] = p.limits.refused[l].Load()
	}
	return out
}

func newCallLimits(maxCalls, perSource, cps, pending int, retryAfter time.Duration, calls callCounter) *callLimits {
	l := &callLimits{maxCalls: maxCalls, perSource: perSource, maxPending: int64(pending),
		retryAfter: strconv.Itoa(int(retryAfter / time.Second)), calls: calls}
	if cps > 0 {
		l.cps = newTokenBucket(cps)
	}
	return l
}

// callerUser is the user a call is counted against for
// max_calls_per_user: the From's user@domain when that identity means
// something — the caller authenticated, a trusted peer asserts it, or auth
// is off (the operator trusts From) — else "" (nobody's: anyone can write
// any From, and a stranger must not use up a user's calls).
func (p *Proxy) callerUser(req *sip.Request, peer string, authed bool) string {
	if authed || peer != "" || p.auth == nil {
		return aorOf(req.From().Address)
	}
	return ""
}

// callerLimit applies the per-peer and per-user call limits to an initial
// INVITE from peer (or "") once it is known who sends it: the response to
// refuse it with, or nil. A peer over its max_calls gets 503 with
// Retry-After; a user over max_calls_per_user gets 486 Busy Here (the user
// is busy, not the server).
func (p *Proxy) callerLimit(req *sip.Request, peer, user string) *sip.Response {
	l := p.limits
	if l.calls == nil {
		return nil
	}
	hit := LimitUnknown
	switch {
	case peer != "" && p.peerMax[peer] > 0 && l.calls.CountPeer(peer) >= p.peerMax[peer]:
		hit = LimitCallsPerPeer
	case l.perUser > 0 && user != "" && l.calls.CountUser(user) >= l.perUser:
		hit = LimitCallsPerUser
	default:
		return nil
	}
	if n := l.refused[hit].Add(1); n == 1 || n%1000 == 0 {
		p.log.Warn("new call refused: limit reached", "limit", hit.String(), "call_id", callID(req), "peer", req.Source(), "total", n)
	}
	if hit == LimitCallsPerUser {
		return sip.NewResponseFromRequest(req, sip.StatusBusyHere, "Busy Here", nil)
	}
	res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
	res.AppendHeader(sip.NewHeader("Retry-After", l.retryAfter))
	return res
}
