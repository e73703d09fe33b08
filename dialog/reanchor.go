package dialog

import (
	"context"
	"errors"
	"fmt"

	"sipanchor/relay"
)

// Moving a call to a new relay session (rtp_relay_update): a new session
// is made from the last accepted SDPs, and the SIP layer sends each end a
// re-INVITE in the other's name with the SDP pointing at the new ports.
// Those requests use CSeq numbers the other UA never sent, so from then on
// the dialog adds an offset to each direction's CSeqs (ForwardCSeq), as
// OpenSIPS's dialog module does.

// ErrBusy: the dialog has an offer/answer or a move in progress.
var ErrBusy = errors.New("dialog busy: an offer/answer is in progress")

// Reinvite is one request the SIP layer sends for a move.
type Reinvite struct {
	To, From Party // who receives it, and in whose name
	CSeq     uint32
	SDP      []byte
}

// Move is a re-anchoring in progress.
type Move struct {
	CallID             string
	ToCallee, ToCaller Reinvite
	oldBranch, branch  string
	session            relay.Session
}

// forwardCSeq maps the CSeq of a request from side `from` to the number the
// other side sees. Call with the dialog locked.
func (d *Dialog) forwardCSeq(from relay.Leg, cseq uint32) uint32 {
	return cseq + d.offset[legIndex(from)]
}

// BeginMove sets up the new relay session; flags, when not nil, replace the
// legs' flags (caller, callee). The SIP layer then sends m.ToCallee and
// m.ToCaller and reports with FinishMove.
func (m *Manager) BeginMove(ctx context.Context, d *Dialog, flags *[2]relay.LegFlags) (*Move, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.ended || d.state != StateConfirmed:
		return nil, fmt.Errorf("dialog %s is %s, not confirmed", d.callID, d.state)
	case !d.engaged:
		return nil, fmt.Errorf("dialog %s: %w", d.callID, ErrNotEngaged)
	case d.moving || len(d.pending) > 0:
		return nil, ErrBusy
	case d.accepted[0] == nil || d.accepted[1] == nil:
		return nil, fmt.Errorf("dialog %s has no completed offer/answer to move", d.callID)
	}
	if flags != nil {
		d.flags = *flags
	}
	d.moves++
	mv := &Move{CallID: d.callID, oldBranch: d.branch, branch: fmt.Sprintf("%s.m%d", d.branch, d.moves)}
	offer, err := m.engine.Offer(ctx, d.req(mv.branch, relay.Caller, d.accepted[0]))
	if err != nil {
		return nil, err
	}
	answer, err := m.engine.Answer(ctx, d.req(mv.branch, relay.Callee, d.accepted[1]))
	if err != nil {
		_ = m.engine.Delete(ctx, d.req(mv.branch, relay.Caller, nil))
		return nil, err
	}
	mv.session = offer.Session
	// New CSeqs in each direction, and the offsets that keep the UAs' own
	// later requests above them.
	d.caller.CSeq++
	d.offset[0]++
	d.callee.CSeq++
	d.offset[1]++
	mv.ToCallee = Reinvite{To: d.callee, From: d.caller, CSeq: d.caller.CSeq, SDP: offer.SDP}
	mv.ToCaller = Reinvite{To: d.caller, From: d.callee, CSeq: d.callee.CSeq, SDP: answer.SDP}
	d.moving = true
	d.log.Info("moving media", "from_branch", mv.oldBranch, "to_branch", mv.branch)
	return mv, nil
}

// FinishMove completes a move with the answers of the caller and the
// callee to their re-INVITEs, or (ok false) abandons it. It returns the
// re-INVITEs that put back a side that had already accepted the move.
func (m *Manager) FinishMove(ctx context.Context, d *Dialog, mv *Move, ok bool, callerSDP, calleeSDP []byte) []Reinvite {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.moving = false
	if d.ended {
		_ = m.engine.Delete(ctx, d.req(mv.branch, relay.Caller, nil))
		return nil // ended while moving: nothing to keep or put back
	}
	if !ok {
		_ = m.engine.Delete(ctx, d.req(mv.branch, relay.Caller, nil))
		var undo []Reinvite
		for _, x := range []struct {
			accepted bool
			leg      relay.Leg
		}{{calleeSDP != nil, relay.Callee}, {callerSDP != nil, relay.Caller}} {
			if !x.accepted {
				continue
			}
			// The old session's SDP for that side, on its old ports.
			var rep *relay.Reply
			var err error
			if x.leg == relay.Callee {
				rep, err = m.engine.Offer(ctx, d.req(mv.oldBranch, relay.Caller, d.accepted[0]))
			} else {
				rep, err = m.engine.Answer(ctx, d.req(mv.oldBranch, relay.Callee, d.accepted[1]))
			}
			if err != nil {
				continue
			}
			to, from := &d.callee, &d.caller
			if x.leg == relay.Caller {
				to, from = &d.caller, &d.callee
			}
			from.CSeq++
			d.offset[legIndex(x.leg.Other())]++
			undo = append(undo, Reinvite{To: *to, From: *from, CSeq: from.CSeq, SDP: rep.SDP})
		}
		d.log.Warn("media move abandoned", "branch", mv.branch, "undo", len(undo))
		return undo
	}
	// The UAs' answers may name new ports of their own.
	if _, err := m.engine.Answer(ctx, d.req(mv.branch, relay.Callee, calleeSDP)); err != nil {
		d.log.Warn("applying the callee's answer to the move", "err", err)
	}
	if _, err := m.engine.Answer(ctx, d.req(mv.branch, relay.Caller, callerSDP)); err != nil {
		d.log.Warn("applying the caller's answer to the move", "err", err)
	}
	d.branch = mv.branch
	d.session = mv.session
	d.accepted = [2][]byte{callerSDP, calleeSDP}
	delete(d.branches, mv.oldBranch)
	d.branches[mv.branch] = mv.session
	_ = m.engine.Delete(ctx, d.req(mv.oldBranch, relay.Caller, nil))
	m.watch(d, mv.session)
	m.persist(d)
	d.log.Info("media moved", "branch", mv.branch)
	return nil
}
