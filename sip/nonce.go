package sip

import (
	"strconv"
	"sync"
	"time"
)

// Replay protection for digest credentials (RFC 2617 §3.2.2, RFC 7616
// §3.4): each nonce's highest accepted nonce count. A credential whose nc
// is not above it is a replay, even with a valid response: a captured
// Authorization header cannot be used again. Without qop (no nc) a nonce
// is good once. Nonces are also bound to the client's source address, so a
// captured one is no use from elsewhere.
type nonceCounts struct {
	mu   sync.Mutex
	seen map[string]nonceUse
	max  int
}

type nonceUse struct {
	nc     uint64
	issued time.Time
}

// maxNonces bounds the table: at most this many nonces answered within
// nonceLife are remembered; past it, a new nonce is refused (the client
// is challenged again) rather than grow memory under a flood.
const maxNonces = 1 << 17

func newNonceCounts() *nonceCounts { return &nonceCounts{seen: map[string]nonceUse{}, max: maxNonces} }

// accept records nc for nonce (issued at issued) and reports whether it is
// fresh: above every nc accepted before for that nonce. ncHex is the
// credential's nc ("" without qop).
func (c *nonceCounts) accept(nonce, ncHex string, issued, now time.Time) bool {
	var nc uint64 = 1
	if ncHex != "" {
		n, err := strconv.ParseUint(ncHex, 16, 64)
		if err != nil || n == 0 {
			return false
		}
		nc = n
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.seen[nonce]
	if ok && nc <= u.nc {
		return false
	}
	if !ok && len(c.seen) >= c.max {
		c.pruneLocked(now)
		if len(c.seen) >= c.max {
			return false
		}
	}
	c.seen[nonce] = nonceUse{nc: nc, issued: issued}
	return true
}

// prune forgets nonces past their life: they are refused as stale anyway.
func (c *nonceCounts) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
}

func (c *nonceCounts) pruneLocked(now time.Time) {
	for n, u := range c.seen {
		if now.Sub(u.issued) > nonceLife {
			delete(c.seen, n)
		}
	}
}
