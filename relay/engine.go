package relay

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"sipanchor/media"
)

// Leg is one side of a call.
type Leg uint8

const (
	LegUnknown Leg = iota
	Caller         // the From-tag side of the initial INVITE
	Callee
)

func (l Leg) String() string {
	switch l {
	case Caller:
		return "caller"
	case Callee:
		return "callee"
	}
	return "unknown"
}

// Other is the opposite leg.
func (l Leg) Other() Leg {
	if l == Caller {
		return Callee
	}
	return Caller
}

// SessionKey names a relay session as rtpproxy/rtpengine do: Call-ID and
// From-tag name the call, To-tag and Via branch one forked branch of it.
type SessionKey struct {
	CallID, FromTag, ToTag, ViaBranch string
}

func (k SessionKey) String() string {
	return fmt.Sprintf("%s;from-tag=%s;via-branch=%s", k.CallID, k.FromTag, k.ViaBranch)
}

// Request is one engine call.
type Request struct {
	Key    SessionKey
	From   Leg            // who sent SDP
	SDP    []byte         // the SDP as sent
	Source netip.AddrPort // where the SIP message carrying it came from
	Caller LegFlags
	Callee LegFlags
	// Set names the relay set a new call goes to ("" = the engine's
	// default); engines without sets ignore it.
	Set string
	// Early: the SDP is exchanged before the call is answered (the
	// initial offer, a 18x, a PRACK or UPDATE in an early dialog). An
	// early answer does not start the setup clock; the 2xx does
	// (Confirmer), or for callers that cannot tell, any answer not Early.
	Early bool
}

// Reply is an engine's answer to Offer or Answer.
type Reply struct {
	SDP     []byte  // rewritten SDP to forward
	Session Session // nil when the engine chose not to relay (loop-protect)
}

// Session is what a dialog keeps once engaged.
type Session interface {
	Key() SessionKey
	Done() <-chan struct{} // closed when the engine ends the session
	Err() error            // why: ErrMediaTimeout, ...
}

// Stats are a session's counters, per stream and leg, in the same shape
// for every engine.
type (
	Stats         = media.Stats
	StreamStats   = media.StreamStats
	EndpointStats = media.EndpointStats
)

// Engine is a media relay driven by the dialog layer. The dialog layer
// calls Offer for each SDP offer (initial INVITE, re-INVITE, UPDATE, late
// offer in a 2xx), Answer for the matching answer, and Delete when a
// branch fails or the call ends. Errors that decide a SIP reply are
// *SDPError (488) or wrap ErrNoPorts (503).
type Engine interface {
	Offer(ctx context.Context, r *Request) (*Reply, error)
	Answer(ctx context.Context, r *Request) (*Reply, error)
	// Delete ends one branch (Key.ViaBranch set) or the whole call.
	Delete(ctx context.Context, r *Request) error
	Query(ctx context.Context, k SessionKey) (*Stats, error)
}

var (
	// ErrMediaTimeout: the session ended because its media stopped.
	ErrMediaTimeout = media.ErrMediaTimeout
	// ErrNoPorts: no media ports left; the INVITE gets 503.
	ErrNoPorts = media.ErrNoPorts
	// ErrNoSession: the key names no session.
	ErrNoSession = errors.New("no relay session")
)

// SDPError is an SDP the engine cannot relay; it decides a 488.
type SDPError struct{ Err error }

func (e *SDPError) Error() string { return "sdp: " + e.Err.Error() }
func (e *SDPError) Unwrap() error { return e.Err }

// Confirmer is an Engine that is told when a call is answered (its 2xx):
// the dialog layer calls it once per call, after the answering branch's
// Offer/Answer. Its setup clock (no media since the answer) starts then,
// not at an answer in a 183, so a call ringing with early media, or none,
// keeps its relay however long it rings.
type Confirmer interface {
	Confirm(ctx context.Context, k SessionKey) error
}

// Persister is an Engine whose sessions can be saved with their dialog and
// rebuilt after a restart: the builtin engine's state is its ports and
// latches; the NG client's, the node that holds the call (whose session
// then watches that node for the call's media timeout again).
type Persister interface {
	Export(ctx context.Context, k SessionKey) ([]byte, error)
	Import(ctx context.Context, k SessionKey, state []byte) (Session, error)
}
