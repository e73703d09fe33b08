package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"sipanchor/media"
)

// Builtin is the Engine over sipanchor's own media relay. Each branch of a
// call (Call-ID, From-tag, Via branch) is one media session, so a forked
// INVITE gets ports per branch and only the answered branch keeps them.
type Builtin struct {
	relay *media.Relay

	mu    sync.Mutex
	calls map[string]map[string]bool // call (Call-ID+From-tag) → session ids

	off       atomic.Bool // the node disabled by the control plane
	onEnabled atomic.Pointer[func(on bool)]
}

var _ Engine = (*Builtin)(nil)

// NewBuiltin adapts r to the Engine contract.
func NewBuiltin(r *media.Relay) *Builtin {
	return &Builtin{relay: r, calls: map[string]map[string]bool{}}
}

// Relay is the media relay behind the engine.
func (b *Builtin) Relay() *media.Relay { return b.relay }

func callID(k SessionKey) string    { return k.CallID + "\x00" + k.FromTag }
func sessionID(k SessionKey) string { return k.CallID + "\x00" + k.FromTag + "\x00" + k.ViaBranch }

// builtinSession is a media.Session seen through the Session contract.
type builtinSession struct {
	*media.Session
	key SessionKey
}

func (s builtinSession) Key() SessionKey { return s.key }

func (b *Builtin) Offer(ctx context.Context, r *Request) (*Reply, error) {
	return b.apply(r, false)
}

func (b *Builtin) Answer(ctx context.Context, r *Request) (*Reply, error) {
	return b.apply(r, true)
}

func (b *Builtin) apply(r *Request, answer bool) (*Reply, error) {
	info, err := media.ParseSDP(r.SDP)
	if err != nil {
		return nil, &SDPError{Err: err}
	}
	send, recv := r.Caller, r.Callee
	side := media.SideA
	if r.From == Callee {
		send, recv = r.Callee, r.Caller
		side = media.SideB
	}
	if (send.LoopProtect || recv.LoopProtect) && info.NoRTPProxy {
		return &Reply{SDP: r.SDP}, nil // already relayed upstream
	}
	// The SDP address is only a hint of where to send before the side's
	// first packet latches it. A private address that is not where the SIP
	// came from names a host behind NAT: unreachable from here, so the SIP
	// source address is the better hint (as rtpproxy does for NATed UAs).
	// SIP-source-address always uses it; trust-address never overrides.
	if r.Source.IsValid() {
		for i := range info.Streams {
			a := info.Streams[i].Addr
			if !a.IsValid() || a.IsUnspecified() {
				continue
			}
			if send.SIPSource || (!send.TrustAddress && behindNAT(a, r.Source.Addr())) {
				info.Streams[i].Target = r.Source.Addr()
			}
		}
	}
	for i := range info.Streams {
		info.Streams[i].Expect = expectedSources(info.Streams[i].Addr, r.Source.Addr().Unmap(), send)
	}
	id := sessionID(r.Key)
	s, exists := b.relay.Get(id)
	if !exists {
		if answer {
			return nil, fmt.Errorf("answer for %s: %w", r.Key, ErrNoSession)
		}
		if s, err = b.relay.Open(id); err != nil {
			return nil, err
		}
		b.mu.Lock()
		c := b.calls[callID(r.Key)]
		if c == nil {
			c = map[string]bool{}
			b.calls[callID(r.Key)] = c
		}
		c[id] = true
		b.mu.Unlock()
	}
	ports, err := s.Apply(side, info, send.Symmetric, answer)
	if err == nil && answer && !r.Early {
		s.MarkAnswered()
	}
	if err != nil {
		if !exists {
			b.drop(r.Key, id)
		}
		if errors.Is(err, media.ErrStreams) {
			return nil, &SDPError{Err: err}
		}
		return nil, err
	}
	addr := b.relay.Advertise()
	if recv.MediaAddress.IsValid() {
		addr = recv.MediaAddress
	}
	mux := recv.RTCPMux
	if mux == "accept" {
		mux = ""
	}
	out, err := media.RewriteSDP(r.SDP, media.Rewrite{
		Addr: addr, Ports: ports, ReplaceOrigin: recv.ReplaceOrigin, ReplaceSessionConnection: recv.ReplaceSessionConnection,
		RemoveICE:   recv.ICERemove,
		LoopProtect: send.LoopProtect || recv.LoopProtect, RTCPMux: mux,
	})
	if err != nil {
		return nil, &SDPError{Err: err}
	}
	return &Reply{SDP: out, Session: builtinSession{Session: s, key: r.Key}}, nil
}

// behindNAT: the SDP names a private address that is not the source.
func behindNAT(sdp, src netip.Addr) bool {
	return sdp != src && (sdp.IsPrivate() || cgnat.Contains(sdp) || sdp.IsLinkLocalUnicast()) && !src.IsPrivate()
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// expectedSources are the IPs a side's media may come from, for strict
// latching: where its SIP came from (src, zero when unknown) and its SDP
// address when that can be where packets come from: public, or of the
// same kind as src (both private, both loopback...); any SDP address with
// trust-address, none with SIP-source-address. Empty = unknown.
func expectedSources(sdp, src netip.Addr, f LegFlags) []netip.Addr {
	var out []netip.Addr
	if src.IsValid() {
		out = append(out, src)
	}
	sdp = sdp.Unmap()
	switch {
	case f.SIPSource && src.IsValid(),
		!sdp.IsValid(), sdp.IsUnspecified(), sdp.IsMulticast(), sdp == src:
	case f.TrustAddress, scope(sdp) == scopePublic, src.IsValid() && scope(sdp) == scope(src):
		out = append(out, sdp)
	}
	return out
}

// Kinds of address, for telling whether packets from one could come from
// a host that named the other.
const (
	scopePublic = iota
	scopePrivate
	scopeLinkLocal
	scopeLoopback
)

func scope(a netip.Addr) int {
	switch {
	case a.IsLoopback():
		return scopeLoopback
	case a.IsLinkLocalUnicast():
		return scopeLinkLocal
	case a.IsPrivate() || cgnat.Contains(a):
		return scopePrivate
	}
	return scopePublic
}

// drop forgets a session and deletes it from the relay.
func (b *Builtin) drop(k SessionKey, id string) {
	_, _ = b.relay.Delete(id)
	b.mu.Lock()
	if c := b.calls[callID(k)]; c != nil {
		delete(c, id)
		if len(c) == 0 {
			delete(b.calls, callID(k))
		}
	}
	b.mu.Unlock()
}

// Delete ends one branch when r.Key.ViaBranch is set, else every branch of
// the call. Deleting what is already gone is not an error: deletes are
// retried and raced by BYE and timeouts.
func (b *Builtin) Delete(ctx context.Context, r *Request) error {
	if r.Key.ViaBranch != "" {
		b.drop(r.Key, sessionID(r.Key))
		return nil
	}
	b.mu.Lock()
	ids := b.calls[callID(r.Key)]
	delete(b.calls, callID(r.Key))
	b.mu.Unlock()
	for id := range ids {
		_, _ = b.relay.Delete(id)
	}
	return nil
}

// Query returns one branch's stats.
func (b *Builtin) Query(ctx context.Context, k SessionKey) (*Stats, error) {
	s, ok := b.relay.Get(sessionID(k))
	if !ok {
		return nil, fmt.Errorf("%s: %w", k, ErrNoSession)
	}
	return s.Stats(), nil
}

// Sessions is the number of live media sessions.
// Confirm starts the session's setup clock: the call was answered.
func (b *Builtin) Confirm(ctx context.Context, k SessionKey) error {
	s, ok := b.relay.Get(sessionID(k))
	if !ok {
		return fmt.Errorf("confirm %s: %w", k, ErrNoSession)
	}
	s.MarkAnswered()
	return nil
}

func (b *Builtin) Sessions() int { return b.relay.Count() }

// KeyOf splits a media session id back into its key (for listings).
func KeyOf(id string) SessionKey {
	p := strings.SplitN(id, "\x00", 3)
	for len(p) < 3 {
		p = append(p, "")
	}
	return SessionKey{CallID: p[0], FromTag: p[1], ViaBranch: p[2]}
}

var _ Persister = (*Builtin)(nil)

// Export is a branch's media state (ports, hints, latches) as JSON.
func (b *Builtin) Export(ctx context.Context, k SessionKey) ([]byte, error) {
	s, ok := b.relay.Get(sessionID(k))
	if !ok {
		return nil, fmt.Errorf("%s: %w", k, ErrNoSession)
	}
	return json.Marshal(s.State())
}

// Import rebuilds an exported session on its old ports.
func (b *Builtin) Import(ctx context.Context, k SessionKey, state []byte) (Session, error) {
	var st media.SessionState
	if err := json.Unmarshal(state, &st); err != nil {
		return nil, fmt.Errorf("media state of %s: %w", k, err)
	}
	id := sessionID(k)
	s, err := b.relay.Restore(id, st)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	c := b.calls[callID(k)]
	if c == nil {
		c = map[string]bool{}
		b.calls[callID(k)] = c
	}
	c[id] = true
	b.mu.Unlock()
	return builtinSession{Session: s, key: k}, nil
}
