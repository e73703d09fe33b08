package sip

import (
	"context"
	"database/sql"
	"fmt"
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
type Location struct {
	db  *sql.DB
	log *slog.Logger

	mu    sync.Mutex
	byAOR map[string][]*Binding
}

// OpenLocation loads the bindings that have not expired from the location
// table of db, a store opened with store.Open.
func OpenLocation(ctx context.Context, db *sql.DB, log *slog.Logger) (*Location, error) {
	l := &Location{db: db, log: log, byAOR: map[string][]*Binding{}}
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

// update applies fn to the bindings of aor under the lock; fn returns the new
// list and whether anything changed. The new list is written to the
// database in one transaction before it becomes visible.
func (l *Location) update(ctx context.Context, aor string, fn func([]*Binding) ([]*Binding, error)) ([]Binding, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.byAOR[aor]
	cur := make([]*Binding, len(old))
	for i, b := range old {
		c := *b
		cur[i] = &c
	}
	next, err := fn(cur)
	if err != nil {
		return nil, err
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM location WHERE aor = ?`, aor); err != nil {
		return nil, err
	}
	for _, b := range next {
		if _, err := tx.ExecContext(ctx, `INSERT INTO location (aor, contact, expires, q, call_id, cseq, received, transport, local, user_agent, nat)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			b.AOR, b.Contact, b.Expires.Unix(), b.Q, b.CallID, b.CSeq, b.Received.String(), b.Transport, b.Local, b.UserAgent, b.NAT); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	if len(next) == 0 {
		delete(l.byAOR, aor)
	} else {
		l.byAOR[aor] = next
	}
	out := make([]Binding, len(next))
	for i, b := range next {
		out[i] = *b
	}
	return out, nil
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
