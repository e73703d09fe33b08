package dialog

import (
	"context"
	"time"

	"sipanchor/relay"
)

// Dialogs saved while early: their INVITE went out with our relay SDP and
// no 2xx had come when sipanchor stopped. Each branch's relay session is
// rebuilt, so that the callee's 2xx, relayed statelessly after the
// restart, is answered by the same relay ports the caller was offered.

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
	if p, ok := m.engine.(relay.Persister); ok {
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
