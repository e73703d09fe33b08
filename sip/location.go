package sip

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Binding is one registered contact of an address-of-record.
type Binding struct {
	AOR       string         // "user@domain", lower-case domain
	Contact   string         // the Contact URI as the UA wrote it
	Expires   time.Time      // when the binding lapses
	Q         float64        // preference, 0..1 (1 when not given)
	CallID    string         // of the REGISTER that last refreshed it
	CSeq      uint32         // likewise
	Received  netip.AddrPort // where the REGISTER came from
	Transport string         // "udp" or "tcp": how the REGISTER came
	Local     string         // the listener it came through ("udp:IP:PORT")
	UserAgent string
	NAT       bool // Contact did not match Received: reach it at Received

	failures int // unanswered keepalives in a row (not stored)
}

// Location is the registrar's binding table: a map in memory for lookups,
// written through to SQLite so that bindings survive a restart.
//
// Two kinds of lock: writers of one AOR queue on its stripe of writers
// (held across the SQLite transaction, so a REGISTER never waits for
// another AOR's commit beyond the stripe it shares); mu guards the map and
// is held only in memory, so an INVITE's Lookup never waits for SQLite.
type Location struct {
	db  *sql.DB
	log *slog.Logger

	seed    maphash.Seed
	writers [writerStripes]sync.Mutex

	mu     sync.Mutex
	byAOR  map[string][]*Binding
	byFlow map[flowKey]int // bindings by transport and received address
}

// writerStripes is how many AORs can be written at once (SQLite then
// serialises the commits themselves); a power of two.
const writerStripes = 64

// OpenLocation loads the bindings that have not expired from the location
// table of db, a store opened with store.Open.
func OpenLocation(ctx context.Context, db *sql.DB, log *slog.Logger) (*Location, error) {
	l := &Location{db: db, log: log, seed: maphash.MakeSeed(), byAOR: map[string][]*Binding{}, byFlow: map[flowKey]int{}}
	now := time.Now()
	if _, err := db.ExecContext(ctx, `DELETE FROM location WHERE expires <= ?`, now.Unix()); err != nil {
		return nil, fmt.Errorf("location cleanup: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT aor, contact, expires, q, call_id, cseq, received, transport, local, user_agent, nat FROM location`)
	if err != nil {
		return nil, fmt.Errorf("location load: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var b Binding
		var exp int64
		var rcv string
		if err := rows.Scan(&b.AOR, &b.Contact, &exp, &b.Q, &b.CallID, &b.CSeq, &rcv, &b.Transport, &b.Local, &b.UserAgent, &b.NAT); err != nil {
			return nil, fmt.Errorf("location load: %w", err)
		}
		b.Expires = time.Unix(exp, 0)
		b.Received, _ = netip.ParseAddrPort(rcv)
		l.byAOR[b.AOR] = append(l.byAOR[b.AOR], &b)
		l.index([]*Binding{&b}, 1)
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("location load: %w", err)
	}
	log.Info("location loaded", "bindings", n)
	return l, nil
}

// Lookup returns copies of the live bindings of aor, best q first.
func (l *Location) Lookup(aor string, now time.Time) []Binding {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Binding
	for _, b := range l.byAOR[aor] {
		if b.Expires.After(now) {
			out = append(out, *b)
		}
	}
	slices.SortStableFunc(out, func(a, b Binding) int {
		switch {
		case a.Q > b.Q:
			return -1
		case a.Q < b.Q:
			return 1
		}
		return 0
	})
	return out
}

// All returns copies of every live binding.
func (l *Location) All(now time.Time) []Binding {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Binding
	for _, bs := range l.byAOR {
		for _, b := range bs {
			if b.Expires.After(now) {
				out = append(out, *b)
			}
		}
	}
	slices.SortFunc(out, func(a, b Binding) int { return strings.Compare(a.AOR+a.Contact, b.AOR+b.Contact) })
	return out
}

// HasFlow reports whether a binding was registered from remote over
// transport: the TCP connection it came over must stay open, since a UA
// behind NAT can be reached only through it.
func (l *Location) HasFlow(transport string, remote netip.AddrPort) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byFlow[flowKey{transport, netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())}] > 0
}

// index adds n for each of bs to the bindings by flow. Call with l.mu held.
func (l *Location) index(bs []*Binding, n int) {
	for _, b := range bs {
		k := flowKey{b.Transport, b.Received}
		if l.byFlow[k] += n; l.byFlow[k] <= 0 {
			delete(l.byFlow, k)
		}
	}
}

// update applies fn to copies of the bindings of aor; fn returns the new
// list. The new list is written to the database in one transaction before
// it becomes visible. Writers of the same AOR are serialised; lookups go on
// meanwhile with the old list.
func (l *Location) update(ctx context.Context, aor string, fn func([]*Binding) ([]*Binding, error)) ([]Binding, error) {
	w := &l.writers[maphash.String(l.seed, aor)%writerStripes]
	w.Lock()
	defer w.Unlock()
	l.mu.Lock()
	old := l.byAOR[aor]
	cur := make([]*Binding, len(old))
	from := make(map[*Binding]*Binding, len(old)) // copy → the live binding
	for i, b := range old {
		c := *b
		cur[i] = &c
		from[&c] = b
	}
	l.mu.Unlock()
	next, err := fn(cur)
	if err != nil {
		return nil, err
	}
	if err := l.store(ctx, aor, next); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Binding, len(next))
	for i, b := range next {
		if live, ok := from[b]; ok {
			b.failures = live.failures // keepalives answered or not while we wrote
		}
		out[i] = *b
	}
	l.index(l.byAOR[aor], -1)
	l.index(next, 1)
	if len(next) == 0 {
		delete(l.byAOR, aor)
	} else {
		l.byAOR[aor] = next
	}
	return out, nil
}

// store replaces the rows of aor with bs in one transaction.
func (l *Location) store(ctx context.Context, aor string, bs []*Binding) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM location WHERE aor = ?`, aor); err != nil {
		return err
	}
	for _, b := range bs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO location (aor, contact, expires, q, call_id, cseq, received, transport, local, user_agent, nat)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			b.AOR, b.Contact, b.Expires.Unix(), b.Q, b.CallID, b.CSeq, b.Received.String(), b.Transport, b.Local, b.UserAgent, b.NAT); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Remove deletes one binding; it reports whether it existed.
func (l *Location) Remove(ctx context.Context, aor, contact string) (bool, error) {
	found := false
	_, err := l.update(ctx, aor, func(bs []*Binding) ([]*Binding, error) {
		return slices.DeleteFunc(bs, func(b *Binding) bool {
			if b.Contact == contact {
				found = true
			}
			return b.Contact == contact
		}), nil
	})
	return found, err
}

// Expire removes the bindings that lapsed by now and returns them.
func (l *Location) Expire(ctx context.Context, now time.Time) ([]Binding, error) {
	l.mu.Lock()
	var aors []string
	for aor, bs := range l.byAOR {
		for _, b := range bs {
			if !b.Expires.After(now) {
				aors = append(aors, aor)
				break
			}
		}
	}
	l.mu.Unlock()
	var gone []Binding
	for _, aor := range aors {
		_, err := l.update(ctx, aor, func(bs []*Binding) ([]*Binding, error) {
			return slices.DeleteFunc(bs, func(b *Binding) bool {
				if !b.Expires.After(now) {
					gone = append(gone, *b)
					return true
				}
				return false
			}), nil
		})
		if err != nil {
			return gone, err
		}
	}
	return gone, nil
}

// keepaliveResult records the outcome of a ping; it returns the number of
// failures in a row (0 after an answer).
func (l *Location) keepaliveResult(aor, contact string, answered bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.byAOR[aor] {
		if b.Contact == contact {
			if answered {
				b.failures = 0
			} else {
				b.failures++
			}
			return b.failures
		}
	}
	return 0
}

// RemoveAOR deletes every binding of an AOR; it returns how many.
func (l *Location) RemoveAOR(ctx context.Context, aor string) (int, error) {
	n := 0
	_, err := l.update(ctx, aor, func(bs []*Binding) ([]*Binding, error) {
		n = len(bs)
		return nil, nil
	})
	return n, err
}
