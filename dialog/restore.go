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
		sent2xx: rec.Sent2xx, invite: rec.Invite, targets: rec.Targets,
	}
	if d.targets == nil {
		d.targets = map[string]BranchTarget{}
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
	m.rearmAckWait(d, rec.Acked)
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

// BranchTarget is how one copy of the initial INVITE left, as the SIP
// layer needs it to CANCEL that copy and to ACK its final response when
// its client transaction is gone (a restart): RFC 3261 §9.1 and §17.1.1.3
// want the INVITE's Request-URI, top Via, Route, From, Call-ID and CSeq
// number again, sent where the INVITE went. This package only keeps it,
// with the branch's relay session, and saves it with an early dialog.
type BranchTarget struct {
	Cancel   string `json:"cancel"`   // the branch's CANCEL, as SIP text
	Dest     string `json:"dest"`     // where the INVITE was sent, host:port
	Listener string `json:"listener"` // the listener it left from
}

// CancelRestored handles a CANCEL that matched no INVITE transaction
// (viaBranch its top Via branch): the INVITE was forwarded before a
// restart and its dialog restored early. As a proxy does (RFC 3261
// §16.10), the CANCEL is then answered 200 and every pending branch is
// CANCELled; the branches' final responses (StrayFinal) end the dialog.
// The relay sessions go at once, as with Cancel: no early media after
// the CANCEL. ok is false when no such INVITE is pending (481); to lists
// the branches to CANCEL, none for a resent CANCEL.
func (d *Dialog) CancelRestored(ctx context.Context, viaBranch string) (to []BranchTarget, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ended || d.state != StateEarly || len(d.targets) == 0 || d.invite != viaBranch {
		return nil, false
	}
	if d.cancelled.Swap(true) {
		return nil, true
	}
	for _, t := range d.targets {
		to = append(to, t)
	}
	for b := range d.branches {
		d.freeBranch(ctx, b)
	}
	d.log.Info("restored call cancelled", "branches", len(to))
	return to, true
}

// StrayFinal handles a final response ≥ 300 to an INVITE that matched no
// client transaction: cseq as forwarded, branch our Via branch. In a
// confirmed dialog it rejects a re-INVITE saved in flight before a
// restart (StrayResponse). In a restored early dialog it ends that
// branch, and with the last one the dialog. relay tells the SIP layer to
// pass the response on, with orig the CSeq its sender wrote: no server
// transaction of this process will send it a final response. to is how
// the branch's INVITE left, for the ACK (zero when not known).
func (d *Dialog) StrayFinal(ctx context.Context, branch string, cseq uint32, code int) (to BranchTarget, relay bool, orig uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == StateConfirmed {
		_, orig, relay, _ = d.strayResponse(ctx, cseq, code, "", nil)
		return to, relay, orig
	}
	to, pending := d.targets[branch]
	if _, ok := d.branches[branch]; ok {
		pending = true
	}
	if d.ended || d.state != StateEarly || !pending {
		return to, false, cseq
	}
	d.branchFailed(ctx, branch)
	if len(d.targets) > 0 || len(d.branches) > 0 {
		return to, false, cseq
	}
	reason := "no 2xx"
	if d.cancelled.Load() {
		reason = "cancelled"
	}
	d.fail(ctx, reason)
	return to, true, cseq
}

// FinalACK reports whether an ACK that matched no transaction, with top
// Via branch branch, acknowledges a final response ≥ 300 to the INVITE
// that began its call: such an ACK carries the INVITE's branch (RFC 3261
// §17.1.1.3), the ACK of a 2xx a branch of its own (§13.2.2.4). It is hop
// by hop: the SIP layer absorbs it. A live early dialog it concerns was
// failed by the process before a restart, its end lost: it ends now.
// Without a live dialog, the call record answers (the call ended before a
// restart, or its 487 was relayed by StrayFinal).
func (m *Manager) FinalACK(ctx context.Context, callID, fromTag, toTag, branch string) bool {
	if branch == "" {
		return false
	}
	if d, _, ok := m.Find(callID, fromTag, toTag); ok {
		return d.finalACK(ctx, branch)
	}
	return m.endedWithInvite(ctx, callID, fromTag, branch)
}

func (d *Dialog) finalACK(ctx context.Context, branch string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.invite == "" || branch != d.invite {
		return false
	}
	if !d.ended && d.state == StateEarly {
		d.fail(ctx, "no 2xx")
	}
	return true
}
