// Package dialog owns dialog state (early, confirmed, terminated) and the
// engage hooks that turn SIP events into relay calls, the OpenSIPS
// rtp_relay model: a call is engaged once, on its initial INVITE, and from
// then on every offer, answer, failure and end of the call drives the
// engine without further configuration. It also decides when a dialog must
// be ended (media timeout, lifetime) and hands that to the SIP layer,
// which sends the BYEs.
package dialog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sipanchor/relay"
)

// State of a dialog.
type State uint8

const (
	StateUnknown State = iota
	StateEarly
	StateConfirmed
	StateTerminated
)

func (s State) String() string {
	switch s {
	case StateEarly:
		return "early"
	case StateConfirmed:
		return "confirmed"
	case StateTerminated:
		return "terminated"
	}
	return "unknown"
}

// Engage decides which calls get their media anchored.
type Engage uint8

const (
	EngageUnknown Engage = iota
	EngageAlways
	EngageNAT // when the caller's SDP or Contact differs from its source or is private
	EngageNever
)

// ParseEngage reads "always", "nat" or "never".
func ParseEngage(s string) (Engage, error) {
	switch s {
	case "always":
		return EngageAlways, nil
	case "nat":
		return EngageNAT, nil
	case "never":
		return EngageNever, nil
	}
	return EngageUnknown, fmt.Errorf("engage %q: want always, nat or never", s)
}

// Config of the dialog layer.
type Config struct {
	Engage   Engage
	Caller   relay.LegFlags // default flags, like $rtp_relay
	Callee   relay.LegFlags // like $rtp_relay_peer
	Lifetime time.Duration  // a dialog is ended after this long; 0 = no limit
	// AckTimeout ends a dialog whose 2xx got no ACK this long (64×T1, RFC
	// 3261 §13.3.1.4) with BYEs both ways; 0 = never.
	AckTimeout time.Duration
	// EarlyTimeout bounds a dialog restored while early (ringing when
	// sipanchor stopped) from its INVITE on; 0 = 3 minutes (timer C).
	EarlyTimeout time.Duration
	Log          *slog.Logger
	// DB keeps confirmed dialogs across restarts and the call records;
	// nil keeps nothing.
	DB *sql.DB
	// OnEvent, if set, is told of every call's start, answer and end and of
	// media timeouts, in order for each call. It must not block.
	OnEvent func(Event)
}

// Event is a call event for the control plane (SSE, webhooks).
type Event struct {
	Type   string    `json:"type"` // call.start, call.answer, call.end, media.timeout
	CallID string    `json:"call_id"`
	Time   time.Time `json:"time"`
	Caller string    `json:"caller,omitempty"`
	Callee string    `json:"callee,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// Engaged: the call's media is anchored.
	Engaged bool `json:"engaged"`
}

// Counters are the dialog layer's totals since start.
type Counters struct {
	Answered, Unanswered, MediaTimeouts uint64
	NoACK                               uint64 // answered calls ended because the 2xx got no ACK
}

// Party is one end of a dialog as the proxy saw it: what is needed to send
// it a request of our own (a BYE).
type Party struct {
	URI     string   // its From/To URI, e.g. <sip:alice@example.test>
	Tag     string   // its tag
	Contact string   // its remote target (Contact URI, with our NAT alias)
	Routes  []string // Route set from us toward it, in order
	CSeq    uint32   // highest CSeq it has used
}

// Ending is what the SIP layer needs to send the BYEs that end a dialog.
type Ending struct {
	CallID         string
	Caller, Callee Party
	Reason         string
}

// Ender sends the BYEs that end a dialog; the SIP layer implements it.
type Ender func(ctx context.Context, e Ending)

// Manager keeps the live dialogs.
type Manager struct {
	engine relay.Engine
	cfg    Config
	log    *slog.Logger
	end    atomic.Pointer[Ender] // set by the SIP layer; watchers may already run

	mu      sync.Mutex
	dialogs map[string]*Dialog
	counts  map[string]int // live dialogs by caller's source IP, peer and user
	wg      sync.WaitGroup
	stop    chan struct{} // closed by Shutdown: timers stop waiting

	answered, unanswered, timeouts, noACK atomic.Uint64
	disabled                              atomic.Bool // relay node disabled: new calls are not engaged

	writes    chan dbWrite // to the store writer; nil without a DB
	flushed   chan struct{}
	stmts     *dialogStmts // the writer's own
	closeMu   sync.RWMutex
	closeOnce sync.Once
	stopped   bool
}

// NewManager builds a dialog layer driving engine; Load then restores the
// dialogs saved in cfg.DB.
func NewManager(engine relay.Engine, cfg Config) *Manager {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{engine: engine, cfg: cfg, log: cfg.Log, dialogs: map[string]*Dialog{}, counts: map[string]int{}, stop: make(chan struct{})}
	if cfg.DB != nil {
		m.writes = make(chan dbWrite, 4096)
		m.flushed = make(chan struct{})
		go m.writer()
	}
	return m
}

// SetEnder installs the function that sends BYEs.
func (m *Manager) SetEnder(e Ender) { m.end.Store(&e) }

// Engine is the relay engine in use.
func (m *Manager) Engine() relay.Engine { return m.engine }

func key(callID, fromTag string) string { return callID + "\x00" + fromTag }

// Dialog is one call. Its mutex serialises the call's events: sipgo runs
// every message on its own goroutine, so a 180 and a 200 of one call may
// otherwise race.
type Dialog struct {
	m   *Manager
	log *slog.Logger

	mu       sync.Mutex
	callID   string
	state    State
	engaged  bool
	caller   Party
	callee   Party
	branch   string // Via branch of the answered branch: the relay session
	created  time.Time
	answered time.Time

	flags     [2]relay.LegFlags        // caller, callee
	set       string                   // relay set of the call
	lateOffer bool                     // the INVITE had no SDP: the 2xx offers, the ACK answers
	offer     []byte                   // the initial INVITE's SDP as received
	peer      string                   // trusted peer the INVITE came from
	user      string                   // caller's user@domain
	branches  map[string]relay.Session // branches holding a relay session
	targets   map[string]BranchTarget  // how each branch's INVITE left, while it may be pending
	invite    string                   // the caller's Via branch of the INVITE (its CANCEL's, its ACK's of a non-2xx)
	early     map[string]string        // early dialogs: callee's tag → branch
	earlyOA   map[string]*exchange     // per branch: an offer in a reliable 18x, answered in the PRACK
	inviteTx  string                   // the initial INVITE's txKey
	session   relay.Session
	src       [2]netip.AddrPort    // SIP source of each side
	accepted  [2][]byte            // last SDP of each side that was part of a completed offer/answer
	pending   map[string]*exchange // offer/answer exchanges in progress, by transaction
	sent2xx   *sent2xx             // the last 2xx to an INVITE, as relayed
	ended     bool
	offset    [2]uint32     // added to CSeqs from caller, callee (requests we sent in their name)
	done      chan struct{} // closed when the dialog ends
	moves     int
	moving    bool
	cancelled atomic.Bool   // the caller CANCELled the initial INVITE
	acked     chan struct{} // closed at the first ACK of the 2xx
}

func legIndex(l relay.Leg) int {
	if l == relay.Callee {
		return 1
	}
	return 0
}

// Get finds a dialog by Call-ID and the caller's tag.
func (m *Manager) Get(callID, fromTag string) (*Dialog, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.dialogs[key(callID, fromTag)]
	return d, ok
}

// Find finds the dialog of an in-dialog request from either side.
func (m *Manager) Find(callID, fromTag, toTag string) (*Dialog, relay.Leg, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.dialogs[key(callID, fromTag)]; ok {
		return d, relay.Caller, true
	}
	if d, ok := m.dialogs[key(callID, toTag)]; ok {
		return d, relay.Callee, true
	}
	return nil, relay.LegUnknown, false
}

// add makes d live under k. Call with m.mu held.
func (m *Manager) add(k string, d *Dialog) {
	m.dialogs[k] = d
	for _, c := range d.countKeys() {
		m.counts[c]++
	}
}

// All lists the live dialogs.
func (m *Manager) All() []*Dialog {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Dialog, 0, len(m.dialogs))
	for _, d := range m.dialogs {
		out = append(out, d)
	}
	return out
}

// InviteInfo is what the SIP layer knows of an initial INVITE.
type InviteInfo struct {
	CallID, FromTag string
	FromURI, ToURI  string
	Contact         string // caller's Contact URI as forwarded (alias added)
	CSeq            uint32
	SDP             []byte
	Source          netip.AddrPort
	// NAT: the caller's Contact or SDP address differs from its source, or
	// is private (the SIP layer computes it).
	NAT bool
	// Set is the relay set chosen for the call ("" = default).
	Set string
	// Peer names the trusted peer the INVITE came from ("" = none); User
	// is the caller's user@domain. Calls are counted by both for limits.
	Peer, User string
	// CallerRoutes is the route set toward the caller (the INVITE's
	// Record-Routes), kept so that a dialog restored while early can still
	// reach the caller.
	CallerRoutes []string
	// Branch is the caller's top Via branch of the INVITE: its CANCEL and
	// its ACK of a non-2xx response carry the same (RFC 3261 §9.1,
	// §17.1.1.3), which tells them apart after a restart.
	Branch string
}

// Begin creates the dialog of an initial INVITE and decides whether it is
// engaged. A retransmitted INVITE finds the existing dialog.
func (m *Manager) Begin(in InviteInfo) *Dialog {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key(in.CallID, in.FromTag)
	if d, ok := m.dialogs[k]; ok {
		return d
	}
	d := &Dialog{
		m: m, log: m.log.With("call_id", in.CallID), callID: in.CallID, state: StateEarly, created: time.Now(),
		caller:   Party{URI: in.FromURI, Tag: in.FromTag, Contact: in.Contact, CSeq: in.CSeq},
		callee:   Party{URI: in.ToURI},
		flags:    [2]relay.LegFlags{m.cfg.Caller, m.cfg.Callee},
		branches: map[string]relay.Session{},
		targets:  map[string]BranchTarget{},
		invite:   in.Branch,
		early:    map[string]string{},
		earlyOA:  map[string]*exchange{},
		inviteTx: txKey("INVITE", in.CSeq),
		pending:  map[string]*exchange{},
		done:     make(chan struct{}),
		acked:    make(chan struct{}),
	}
	d.src[0] = in.Source
	d.set = in.Set
	d.offer = in.SDP
	d.peer, d.user = in.Peer, in.User
	d.caller.Routes = in.CallerRoutes
	switch m.cfg.Engage {
	case EngageAlways:
		d.engaged = true
	case EngageNAT:
		d.engaged = in.NAT
	}
	if m.disabled.Load() {
		d.engaged = false
	}
	d.lateOffer = len(in.SDP) == 0
	if d.lateOffer {
		// The 2xx will offer, the ACK answer.
		d.pending[d.inviteTx] = &exchange{requester: relay.Caller}
	}
	m.add(k, d)
	d.log.Info("dialog started", "engaged", d.engaged, "late_offer", d.lateOffer)
	m.emit(d, "call.start", "")
	return d
}

func (m *Manager) emit(d *Dialog, typ, reason string) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(Event{Type: typ, CallID: d.callID, Time: time.Now(), Caller: d.caller.URI, Callee: d.callee.URI, Reason: reason, Engaged: d.engaged})
	}
}

// SetDisabled stops (or resumes) engaging new calls: the relay node is
// drained while calls in progress keep their sessions.
func (m *Manager) SetDisabled(off bool) { m.disabled.Store(off) }

// Disabled reports whether new calls are engaged.
func (m *Manager) Disabled() bool { return m.disabled.Load() }

// Counters reads the totals.
func (m *Manager) Counters() Counters {
	return Counters{Answered: m.answered.Load(), Unanswered: m.unanswered.Load(), MediaTimeouts: m.timeouts.Load(), NoACK: m.noACK.Load()}
}

func (d *Dialog) req(branch string, from relay.Leg, sdp []byte) *relay.Request {
	src := d.src[0]
	if from == relay.Callee {
		src = d.src[1]
	}
	return &relay.Request{
		Key:  relay.SessionKey{CallID: d.callID, FromTag: d.caller.Tag, ToTag: d.callee.Tag, ViaBranch: branch},
		From: from, SDP: sdp, Source: src, Caller: d.flags[0], Callee: d.flags[1], Set: d.set,
	}
}

// ErrNotEngaged: the dialog's media is not anchored.
var ErrNotEngaged = errors.New("dialog not engaged")

// confirm records the 2xx that set up the dialog: the answering branch,
// the callee's tag and target, and the route sets both ways. Other
// branches' sessions go.
func (d *Dialog) confirm(ctx context.Context, branch string, callee Party, callerRoutes []string, initialSDP []byte, answerSDP []byte) {
	if d.ended || d.state == StateConfirmed {
		return
	}
	d.state = StateConfirmed
	d.answered = time.Now()
	d.branch = branch
	d.callee = callee
	if len(callerRoutes) > 0 {
		d.caller.Routes = callerRoutes
	}
	d.confirmMedia(ctx, branch, initialSDP, answerSDP)
	d.m.armLifetime(d)
	d.m.armAckWait(d)
	d.m.persistNow(d) // before the 2xx leaves
	d.log.Info("dialog confirmed", "branch", branch, "engaged", d.engaged)
	d.m.emit(d, "call.answer", "")
}

// Cancel ends an early dialog whose caller CANCELled: its relay sessions
// are deleted before it returns, so that no early media crosses after the
// caller's 487. It never waits for an engine call in progress on the
// dialog (the SIP layer calls it from the CANCEL's transaction): whoever
// holds the dialog then finds it Cancelled when done and calls Fail.
// Call unlocked.
func (d *Dialog) Cancel(ctx context.Context) {
	d.cancelled.Store(true)
	if !d.mu.TryLock() {
		return
	}
	defer d.mu.Unlock()
	if d.state == StateEarly {
		d.fail(ctx, "cancelled")
	}
}

// Cancelled reports whether the caller CANCELled the initial INVITE.
func (d *Dialog) Cancelled() bool { return d.cancelled.Load() }

// fail ends an early dialog whose INVITE got no 2xx. Call locked.
func (d *Dialog) fail(ctx context.Context, reason string) {
	for b := range d.branches {
		d.branchFailed(ctx, b)
	}
	d.end(reason)
}

// watch ends the dialog when its relay session ends by itself.
func (m *Manager) watch(d *Dialog, s relay.Session) {
	m.wg.Go(func() {
		<-s.Done()
		if err := s.Err(); errors.Is(err, relay.ErrMediaTimeout) {
			m.terminate(d, err.Error()) // "media timeout", or with the silent side
		}
	})
}

// terminate ends a dialog from a timer or watcher (not locked): BYE to
// both ends, then the relay session is deleted. Safe to call more than once.
func (m *Manager) terminate(d *Dialog, reason string) {
	d.mu.Lock()
	if d.ended {
		d.mu.Unlock()
		return
	}
	d.ended = true
	d.state = StateTerminated
	e := Ending{CallID: d.callID, Caller: d.caller, Callee: d.callee, Reason: reason}
	d.mu.Unlock()
	if end := m.end.Load(); end != nil && !e.Caller.unset() && !e.Callee.unset() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		(*end)(ctx, e)
		cancel()
	}
	// finish reads what a move may be changing (the branch): under the lock.
	d.mu.Lock()
	defer d.mu.Unlock()
	m.finish(d, reason)
}

// end ends a dialog whose ending the SIP layer is already relaying (a
// BYE). Call with the dialog locked.
func (d *Dialog) end(reason string) {
	if d.ended {
		return
	}
	d.ended = true
	d.state = StateTerminated
	d.m.finish(d, reason)
}

// finish deletes the relay session, writes the call record and forgets
// the dialog. Call with the dialog locked.
func (m *Manager) finish(d *Dialog, reason string) {
	close(d.done) // once: finish runs after ended was set, which happens once
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var stats *relay.Stats
	if d.engaged {
		if d.branch != "" {
			stats, _ = m.engine.Query(ctx, d.req(d.branch, relay.Caller, nil).Key)
		}
		if err := m.engine.Delete(ctx, d.req("", relay.Caller, nil)); err != nil {
			d.log.Warn("relay delete failed", "err", err)
		}
	}
	m.recordCall(d, reason, stats)
	m.remove(d)
	if d.answered.IsZero() {
		m.unanswered.Add(1)
	} else {
		m.answered.Add(1)
	}
	if strings.HasPrefix(reason, "media timeout") {
		m.timeouts.Add(1)
		m.emit(d, "media.timeout", reason)
	}
	m.emit(d, "call.end", reason)
	d.log.Info("dialog ended", "reason", reason, "duration", time.Since(d.created).Round(time.Millisecond))
}

func (p Party) unset() bool { return p.Contact == "" || p.Tag == "" }

// Terminate ends a dialog from outside (API, shutdown): BYEs and delete.
func (m *Manager) Terminate(d *Dialog, reason string) { m.terminate(d, reason) }

func (m *Manager) remove(d *Dialog) {
	m.mu.Lock()
	if m.dialogs[key(d.callID, d.caller.Tag)] == d {
		delete(m.dialogs, key(d.callID, d.caller.Tag))
		for _, c := range d.countKeys() {
			m.uncount(c)
		}
	}
	m.mu.Unlock()
}

// setCalleeSource records where the callee's SIP comes from, keeping the
// tally by source in step (d.src is written under both locks). Call with
// d locked.
func (m *Manager) setCalleeSource(d *Dialog, src netip.AddrPort) {
	if d.src[1] == src {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	live := m.dialogs[key(d.callID, d.caller.Tag)] == d
	if live && d.src[1].IsValid() {
		m.uncount(sourceKey(d.src[1]))
	}
	d.src[1] = src
	if live && src.IsValid() {
		m.counts[sourceKey(src)]++
	}
}

// Wait waits for background work (timers, BYEs in flight).
func (m *Manager) Wait() { m.wg.Wait() }

// Shutdown makes the dialogs' timers (lifetime, ACK wait, early deadline)
// stop waiting, so that Wait returns: the dialogs stay saved, and a
// restart re-arms their deadlines from what is stored.
func (m *Manager) Shutdown() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
}

// Info is a snapshot of a dialog for the control plane.
type Info struct {
	CallID   string            `json:"call_id"`
	State    string            `json:"state"`
	Engaged  bool              `json:"engaged"`
	Branch   string            `json:"branch,omitempty"`
	Created  time.Time         `json:"created"`
	Answered time.Time         `json:"answered,omitzero"`
	Caller   Party             `json:"caller"`
	Callee   Party             `json:"callee"`
	Flags    [2]relay.LegFlags `json:"-"`
	Key      relay.SessionKey  `json:"-"`
}

// Info snapshots the dialog.
func (d *Dialog) Info() Info {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Info{CallID: d.callID, State: d.state.String(), Engaged: d.engaged, Branch: d.branch,
		Created: d.created, Answered: d.answered, Caller: d.caller, Callee: d.callee, Flags: d.flags,
		Key: relay.SessionKey{CallID: d.callID, FromTag: d.caller.Tag, ToTag: d.callee.Tag, ViaBranch: d.branch}}
}

// ByCallID finds the dialogs with a Call-ID (one, unless forked oddly).
func (m *Manager) ByCallID(callID string) []*Dialog {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Dialog
	for _, d := range m.dialogs {
		if d.callID == callID {
			out = append(out, d)
		}
	}
	return out
}
