package sip

import (
	"bytes"
	"strings"
	"sync/atomic"
	"time"

	"sipanchor/config"
)

// queueShed answers new calls 503 at once while the proxy is behind: an
// initial INVITE that waited longer than maxDelay in a listener's receive
// queue is refused from the read filter, before it costs a parse, a
// transaction, a goroutine, a relay session or a database write. What
// keeps the calls already taken on alive (responses, ACKs, BYEs, every
// in-dialog request) and REGISTERs are never shed, so the backlog drains
// into the calls that can still complete and the wait comes back under
// maxDelay, where new calls are taken on again. The wait is measured per
// datagram by the kernel (stampedConn), so there is no load estimate to
// tune: a message either waited too long or it did not.
type queueShed struct {
	maxDelay   time.Duration // 0: never shed
	retryAfter string        // seconds
	refused    *atomic.Uint64
	lastLog    atomic.Int64 // unix ns of the last log line
	log        func(refused uint64, waited time.Duration)
}

var invitePrefix = []byte("INVITE ")

// reply is the 503 for data when it is a new call that waited too long,
// or nil to let it through.
func (q *queueShed) reply(waited time.Duration, data []byte) []byte {
	if q == nil || q.maxDelay <= 0 || waited <= q.maxDelay || !bytes.HasPrefix(data, invitePrefix) {
		return nil
	}
	m := scanMessage(data)
	if to, ok := m.first("To"); !ok || hasTag(to) {
		return nil // in-dialog: a re-INVITE keeps a call going
	}
	res := m.response(503, "Service Unavailable", "Retry-After: "+q.retryAfter)
	if res == nil {
		return nil
	}
	n := q.refused.Add(1)
	// One line per overload episode (at most one every 10 s), not per INVITE.
	if now := time.Now().UnixNano(); now-q.lastLog.Load() > int64(10*time.Second) {
		q.lastLog.Store(now)
		if q.log != nil {
			q.log(n, waited)
		}
	}
	return res
}

// hasTag reports whether a raw To/From header value carries a tag
// parameter, tolerating the LWS RFC 3261 allows around ";" and "=".
func hasTag(v string) bool {
	if i := strings.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for _, p := range strings.Split(v, ";")[1:] {
		name, _, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(name), "tag") {
			return true
		}
	}
	return false
}

// newQueueShed is the shedding [limits] max_queue_delay asks for; it
// counts into the limits' "queue" refusals.
func (p *Proxy) newQueueShed(lim config.Limits) *queueShed {
	return &queueShed{
		maxDelay: lim.MaxQueueDelay.Duration, retryAfter: p.limits.retryAfter, refused: &p.limits.refused[LimitQueue],
		log: func(n uint64, waited time.Duration) {
			p.log.Warn("behind: new calls answered 503", "limit", LimitQueue.String(), "waited_ms", waited.Milliseconds(),
				"max_queue_delay_ms", lim.MaxQueueDelay.Milliseconds(), "total", n)
		},
	}
}

// QueueDelays is, per UDP listener, the moving average of how long
// datagrams waited in its receive queue before they were read.
func (p *Proxy) QueueDelays() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, l := range p.listeners {
		if l.stamped != nil {
			out[l.key()] = l.stamped.delay()
		}
	}
	return out
}

// statelessTag starts the To tag of every response sipanchor sends
// without a transaction (a 503 while behind, a 400 from the pre-check),
// as Kamailio's sl module does: the ACK of such a response names it, and
// is dropped at the read filter instead of costing a parse and a trip
// through the transaction layer (under overload, one for each shed call).
var statelessTag = "sl" + randHex(3)

var statelessACKTag = []byte(";tag=" + statelessTag + ".")

// statelessACK: data is the ACK of a response sent without a transaction
// (its To carries statelessTag, copied from the response, RFC 3261
// §17.1.1.3).
func statelessACK(data []byte) bool {
	if !bytes.HasPrefix(data, []byte("ACK ")) || !bytes.Contains(data, statelessACKTag) {
		return false
	}
	to, ok := scanMessage(data).first("To")
	return ok && strings.Contains(to, string(statelessACKTag))
}
