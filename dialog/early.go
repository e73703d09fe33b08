package dialog

import (
	"context"
	"net/netip"
	"time"

	"sipanchor/relay"
)

// Early dialogs (RFC 3261 §12.1, RFC 3262, RFC 3311). Each forked branch
// of the initial INVITE has its own relay session; a branch's 18x with a
// To tag creates an early dialog, and requests inside it (PRACK, UPDATE)
// concern that branch's session, found by the callee's tag. An offer in a
// reliable 18x (the INVITE had none) is answered in the PRACK. The relay's
// setup clock does not run before the 2xx: an early answer is sent as
// Early, and the engine is told when the call is answered.

// offerBranch rewrites the initial INVITE's SDP for one forked branch
// (DESIGN: initial INVITE with SDP → Offer). Without SDP or engagement it
// returns the body unchanged. Call with the dialog locked.
func (d *Dialog) offerBranch(ctx context.Context, branch string, to BranchTarget, sdp []byte) ([]byte, error) {
	if d.ended || !d.engaged || len(sdp) == 0 {
		return sdp, nil
	}
	r := d.req(branch, relay.Caller, sdp)
	r.Early = true
	rep, err := d.m.engine.Offer(ctx, r)
	if err != nil {
		return nil, err
	}
	if rep.Session != nil {
		d.branches[branch] = rep.Session
		if to != (BranchTarget{}) {
			d.targets[branch] = to
		}
		d.m.persistNow(d) // before the INVITE with our relay SDP leaves
	}
	return rep.SDP, nil
}

// branchResponse handles a 18x/2xx from a branch of the initial INVITE
// and returns the body to relay. With an offer in the INVITE its SDP is
// the answer; without one, it is the callee's offer (late offer), answered
// in the PRACK (reliable 18x) or the ACK (2xx). Call locked.
func (d *Dialog) branchResponse(ctx context.Context, branch string, code int, toTag string, src netip.AddrPort, sdp []byte) ([]byte, error) {
	if d.ended || d.state == StateConfirmed && code < 200 {
		return sdp, nil // a late provisional: nothing to do
	}
	d.m.setCalleeSource(d, src)
	if toTag != "" {
		if d.callee.Tag == "" {
			d.callee.Tag = toTag
		}
		d.early[toTag] = branch
	}
	if !d.engaged || len(sdp) == 0 {
		return sdp, nil
	}
	r := d.req(branch, relay.Callee, sdp)
	r.Early = code < 200
	oa := d.earlyOA[branch]
	var rep *relay.Reply
	var err error
	switch {
	case !d.lateOffer:
		rep, err = d.m.engine.Answer(ctx, r)
		if err == nil {
			d.earlyOA[branch] = &exchange{requester: relay.Caller, offerer: relay.Caller, answer: sdp, branch: branch}
		}
	case oa != nil && oa.answer != nil:
		// The offer/answer finished in the 18x and PRACK: this repeats
		// the offer (RFC 3262 §5); rewrite it the same way.
		rep, err = d.m.engine.Offer(ctx, r)
		if code >= 200 {
			delete(d.pending, d.inviteTx)
		}
	default:
		rep, err = d.m.engine.Offer(ctx, r)
		if err != nil {
			break
		}
		if code < 200 {
			d.earlyOA[branch] = &exchange{requester: relay.Caller, offerer: relay.Callee, offer: sdp, branch: branch, early: true}
		} else if x := d.pending[d.inviteTx]; x != nil {
			x.offerer, x.offer, x.branch = relay.Callee, sdp, branch
		}
	}
	if err != nil {
		return nil, err
	}
	if rep.Session != nil {
		d.branches[branch] = rep.Session
	}
	return rep.SDP, nil
}

// answerEarlyOffer applies the PRACK's SDP: the caller's answer to the
// offer in a reliable 18x of branch.
func (d *Dialog) answerEarlyOffer(ctx context.Context, x *exchange, sdp []byte) ([]byte, error) {
	r := d.req(x.branch, relay.Caller, sdp)
	r.Early = true
	rep, err := d.m.engine.Answer(ctx, r)
	if err != nil {
		return nil, err
	}
	x.answer = sdp
	return rep.SDP, nil
}

// branchFailed frees a branch that got a final response ≥ 300, was
// cancelled or timed out (DESIGN: final reply ≥ 300, CANCEL → Delete branch).
func (d *Dialog) branchFailed(ctx context.Context, branch string) {
	delete(d.targets, branch)
	d.freeBranch(ctx, branch)
}

// freeBranch deletes a branch's relay session. Call locked.
func (d *Dialog) freeBranch(ctx context.Context, branch string) {
	if _, ok := d.branches[branch]; !ok {
		return
	}
	delete(d.branches, branch)
	if err := d.m.engine.Delete(ctx, d.req(branch, relay.Caller, nil)); err != nil {
		d.log.Warn("relay delete failed", "branch", branch, "err", err)
	}
}

// branchOf is the relay session an in-dialog request concerns: the
// answered branch's, or in an early dialog the branch whose 18x created
// it, by the callee's tag.
func (d *Dialog) branchOf(calleeTag string) (string, bool) {
	if d.state != StateEarly {
		return d.branch, true
	}
	b, ok := d.early[calleeTag]
	return b, ok
}

// confirmMedia settles the answered branch's media at the 2xx: the SDPs
// both sides accepted, the other branches' sessions deleted, the engine
// told the call is answered (its setup clock starts now), and the
// session watched for media timeouts.
func (d *Dialog) confirmMedia(ctx context.Context, branch string, initialSDP, answerSDP []byte) {
	oa := d.earlyOA[branch]
	switch {
	case !d.lateOffer && len(answerSDP) > 0:
		d.accepted = [2][]byte{initialSDP, answerSDP}
	case !d.lateOffer && oa != nil:
		d.accepted = [2][]byte{initialSDP, oa.answer} // answered in a 18x; the 2xx has no SDP
	case d.lateOffer && oa != nil && oa.answer != nil:
		d.accepted = [2][]byte{oa.answer, oa.offer} // offered in a 18x, answered in the PRACK
	}
	for b := range d.branches {
		if b != branch {
			d.branchFailed(ctx, b)
		}
	}
	clear(d.early)
	clear(d.earlyOA)
	for k, x := range d.pending {
		if x.branch != "" && x.branch != branch {
			delete(d.pending, k)
		}
	}
	s := d.branches[branch]
	if s == nil || !d.engaged {
		return
	}
	d.session = s
	if c, ok := d.m.engine.(relay.Confirmer); ok {
		if err := c.Confirm(ctx, d.req(branch, relay.Caller, nil).Key); err != nil {
			d.log.Warn("relay not told the call was answered", "err", err)
		}
	}
	d.m.watch(d, s)
}

// armLifetime ends the dialog with BYEs when relay.lifetime has passed
// since it was answered; a dialog restored after a restart gets what is
// left of it.
func (m *Manager) armLifetime(d *Dialog) {
	lt := m.cfg.Lifetime
	if lt <= 0 {
		return
	}
	left := time.Until(d.answered.Add(lt))
	m.wg.Go(func() {
		t := time.NewTimer(max(left, 0))
		defer t.Stop()
		select {
		case <-t.C:
			m.terminate(d, "dialog lifetime reached")
		case <-d.done:
		case <-m.stop:
		}
	})
}

// noACKReason is the end reason of a dialog whose 2xx got no ACK.
const noACKReason = "no ACK for the 2xx"

// armAckWait ends the dialog with BYEs when its 2xx gets no ACK within
// cfg.AckTimeout: a caller that never ACKs (a flood of answered INVITEs)
// must not hold relay ports for the whole setup timeout.
func (m *Manager) armAckWait(d *Dialog) { m.waitForACK(d, m.cfg.AckTimeout, false) }

// waitForACK ends d after wait unless its ACK comes first. For a dialog
// restored after a restart (restored) the saved "not ACKed" may be a save
// that did not reach the disk before the crash: a call whose caller has
// sent media since the restart is alive and is not ended.
func (m *Manager) waitForACK(d *Dialog, wait time.Duration, restored bool) {
	if wait <= 0 {
		return
	}
	m.wg.Go(func() {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			if restored && m.callerSentMedia(d) {
				return
			}
			m.noACK.Add(1)
			m.terminate(d, noACKReason)
		case <-d.acked:
		case <-d.done:
		case <-m.stop:
		}
	})
}

// callerSentMedia: the relay has had packets from d's caller (since it
// was restored, for a restored session).
func (m *Manager) callerSentMedia(d *Dialog) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.engaged || d.session == nil || d.ended {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := m.engine.Query(ctx, d.req(d.branch, relay.Caller, nil).Key)
	if err != nil || st == nil {
		return false
	}
	for _, s := range st.Streams {
		if s.Caller.PacketsIn > 0 || s.CallerRTCP.PacketsIn > 0 {
			return true
		}
	}
	return false
}

// rearmAckWait arms the ACK wait of a dialog restored answered but not
// ACKed, for what is left of it since the answer.
func (m *Manager) rearmAckWait(d *Dialog, acked bool) {
	if acked || d.answered.IsZero() {
		return
	}
	if m.cfg.AckTimeout <= 0 {
		return
	}
	// At least restoredACKGrace, for the caller's media to show the call
	// alive when the ACK came but its save was lost with the crash (the
	// process may have been down past the whole wait).
	grace := min(restoredACKGrace, m.cfg.AckTimeout)
	m.waitForACK(d, max(m.cfg.AckTimeout-time.Since(d.answered), grace), true)
}

// restoredACKGrace is the least a restored dialog waits for its ACK (or
// the whole ACK wait, when that is shorter).
const restoredACKGrace = 5 * time.Second

// ackSeen marks the 2xx acknowledged, and saves that (not waiting: the
// ACK does not wait for the disk). Call locked.
func (d *Dialog) ackSeen() {
	if !d.ackedYet() {
		close(d.acked)
		d.m.persist(d)
	}
}

// ackedYet: the 2xx has had its ACK.
func (d *Dialog) ackedYet() bool {
	select {
	case <-d.acked:
		return true
	default:
		return false
	}
}
