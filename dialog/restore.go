package dialog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"sipanchor/relay"
)

// Dialogs saved while early: their INVITE went out with our relay SDP and
// no 2xx had come when sipanchor stopped. Each branch's relay session is
// rebuilt, so that the callee's 2xx, relayed statelessly after the
// restart, is answered by the same relay ports the caller was offered.

// errBadRecord: a saved dialog row that cannot be restored whole.
var errBadRecord = errors.New("unusable saved dialog")

// decodeRecord reads the dialog saved in the row (callID, fromTag): it
// must be one whole dialog, saved under its own key.
func decodeRecord(callID, fromTag, data string) (record, error) {
	var rec record
	if err := json.Unmarshal([]byte(data), &rec); err != nil {
		return record{}, fmt.Errorf("%w: %v", errBadRecord, err)
	}
	switch {
	case callID == "" || fromTag == "":
		return record{}, fmt.Errorf("%w: no Call-ID or caller tag", errBadRecord)
	case rec.CallID != callID || rec.Caller.Tag != fromTag:
		// Restored under its own key, it would outlive its row (ending it
		// deletes another) and count twice against the caller's limits.
		return record{}, fmt.Errorf("%w: the row is %q/%q, its data says %q/%q", errBadRecord, callID, fromTag, rec.CallID, rec.Caller.Tag)
	}
	return rec, nil
}

// restoreRow makes the dialog saved in one row live again.
func (m *Manager) restoreRow(ctx context.Context, callID, fromTag, data string) error {
	rec, err := decodeRecord(callID, fromTag, data)
	if err != nil {
		return err
	}
	d := &Dialog{
		m: m, log: m.log.With("call_id", rec.CallID), callID: rec.CallID, state: StateConfirmed, engaged: rec.Engaged,
		caller: rec.Caller, callee: rec.Callee, branch: rec.Branch, created: rec.Created, answered: rec.Answered,
		flags: rec.Flags, accepted: rec.Accepted, branches: map[string]relay.Session{}, pending: map[string]*exchange{},
		early: map[string]string{}, earlyOA: map[string]*exchange{},
		offset: rec.Offset, moves: rec.Moves, done: make(chan struct{}), acked: make(chan struct{}),
		lateOffer: rec.LateOffer, offer: rec.Offer, set: rec.Set, src: rec.Src, peer: rec.Peer, user: rec.User,
	}
	d.restorePending(rec.Pending)
	if rec.Early {
		m.restoreEarly(ctx, d, rec)
		return nil
	}
	if p, ok := m.engine.(relay.Persister); ok && rec.Engaged && len(rec.Media) > 0 {
		s, err := p.Import(ctx, d.req(d.branch, relay.Caller, nil).Key, rec.Media)
		if err != nil {
			d.log.Warn("relay session not restored", "err", err)
		} else {
			d.session = s
			d.branches[d.branch] = s
			m.watch(d, s)
		}
	}
	m.armLifetime(d)
	m.mu.Lock()
	m.add(key(d.callID, d.caller.Tag), d)
	m.mu.Unlock()
	return nil
}

// worthSaving: a confirmed dialog, or an early one holding relay sessions.
func (d *Dialog) worthSaving() bool {
	switch d.state {
	case StateConfirmed:
		return true
	case StateEarly:
		return d.engaged && len(d.branches) > 0 && !d.cancelled.Load()
	}
	return false
}

// restoreEarly rebuilds an early dialog's branch sessions and bounds its
// life: no 2xx within EarlyTimeout of the INVITE ends it.
func (m *Manager) restoreEarly(ctx context.Context, d *Dialog, rec record) {
	d.state = StateEarly
	if d.lateOffer {
		d.inviteTx = txKey("INVITE", d.caller.CSeq)
		d.pending[d.inviteTx] = &exchange{requester: relay.Caller}
	}
	if p, ok := m.engine.(relay.Persister); ok && d.engaged { // only an engaged dialog deletes them when it ends
		for b, st := range rec.Branches {
			s, err := p.Import(ctx, d.req(b, relay.Caller, nil).Key, st)
			if err != nil {
				d.log.Warn("early relay session not restored", "branch", b, "err", err)
				continue
			}
			d.branches[b] = s
		}
	}
	m.mu.Lock()
	m.add(key(d.callID, d.caller.Tag), d)
	m.mu.Unlock()
	limit := m.cfg.EarlyTimeout
	if limit <= 0 {
		limit = 3 * time.Minute
	}
	left := time.Until(d.created.Add(limit))
	m.wg.Go(func() {
		t := time.NewTimer(max(left, 0))
		defer t.Stop()
		select {
		case <-t.C:
			d.mu.Lock()
			if d.state == StateEarly {
				d.fail(context.Background(), "no answer after the restart")
			}
			d.mu.Unlock()
		case <-d.done:
		case <-m.stop:
		}
	})
}

// Early reports whether the dialog has had no 2xx yet.
func (d *Dialog) Early() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state == StateEarly && !d.ended
}
