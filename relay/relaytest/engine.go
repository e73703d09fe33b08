// Package relaytest is a recording fake of relay.Engine for tests of the
// layers above it: every call is recorded, SDP comes back marked with the
// call that rewrote it, and sessions end when the test says so.
package relaytest

import (
	"context"
	"fmt"
	"sync"

	"sipanchor/relay"
)

// Call is one recorded engine call.
type Call struct {
	Op     string // "offer", "answer", "delete", "query"
	Key    relay.SessionKey
	From   relay.Leg
	SDP    string
	Caller relay.LegFlags
	Callee relay.LegFlags
}

func (c Call) String() string {
	return fmt.Sprintf("%s %s branch=%q %q", c.Op, c.From, c.Key.ViaBranch, c.SDP)
}

// Engine records calls. Fail, when set, makes Offer and Answer return it.
type Engine struct {
	mu       sync.Mutex
	calls    []Call
	sessions map[string]*Session
	Fail     error
}

var _ relay.Engine = (*Engine)(nil)

// New returns an empty fake.
func New() *Engine { return &Engine{sessions: map[string]*Session{}} }

// Calls returns what was called so far and forgets it.
func (e *Engine) Calls() []Call {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.calls
	e.calls = nil
	return c
}

// Session returns the live session of a branch, or nil.
func (e *Engine) Session(branch string) *Session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sessions[branch]
}

func (e *Engine) record(op string, r *relay.Request) {
	e.calls = append(e.calls, Call{Op: op, Key: r.Key, From: r.From, SDP: string(r.SDP), Caller: r.Caller, Callee: r.Callee})
}

func (e *Engine) reply(op string, r *relay.Request) (*relay.Reply, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.record(op, r)
	if e.Fail != nil {
		return nil, e.Fail
	}
	s := e.sessions[r.Key.ViaBranch]
	if s == nil {
		s = &Session{key: r.Key, done: make(chan struct{})}
		e.sessions[r.Key.ViaBranch] = s
	}
	return &relay.Reply{SDP: []byte(op + ":" + string(r.SDP)), Session: s}, nil
}

func (e *Engine) Offer(ctx context.Context, r *relay.Request) (*relay.Reply, error) {
	return e.reply("offer", r)
}

func (e *Engine) Answer(ctx context.Context, r *relay.Request) (*relay.Reply, error) {
	return e.reply("answer", r)
}

// Delete ends one branch's session, or all when no branch is given.
func (e *Engine) Delete(ctx context.Context, r *relay.Request) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.record("delete", r)
	for b, s := range e.sessions {
		if r.Key.ViaBranch == "" || b == r.Key.ViaBranch {
			s.end(nil)
			delete(e.sessions, b)
		}
	}
	return nil
}

func (e *Engine) Query(ctx context.Context, k relay.SessionKey) (*relay.Stats, error) {
	return &relay.Stats{ID: k.String()}, nil
}

// Session is a fake relay session.
type Session struct {
	key  relay.SessionKey
	once sync.Once
	mu   sync.Mutex
	err  error
	done chan struct{}
}

func (s *Session) Key() relay.SessionKey { return s.key }
func (s *Session) Done() <-chan struct{} { return s.done }
func (s *Session) Err() error            { s.mu.Lock(); defer s.mu.Unlock(); return s.err }

// Timeout ends the session as a media timeout would.
func (s *Session) Timeout() { s.end(relay.ErrMediaTimeout) }

func (s *Session) end(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
	})
}
