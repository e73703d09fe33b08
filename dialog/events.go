package dialog

import (
	"context"
	"net/netip"

	"sipanchor/relay"
)

// The SIP layer's entry points: one per SIP event, each taking the
// dialog's lock for that event only (sipgo runs every message on its own
// goroutine; a 180 and a 200 of one call may race). The lock is the
// dialog's own: engine round-trips may happen under it, never under the
// manager's. Every entry point does nothing to a dialog that has ended.

// OfferBranch rewrites one forked branch's copy of the initial INVITE's
// SDP (DESIGN: initial INVITE with SDP → Offer); to is how that copy
// leaves, kept with the branch's relay session.
func (d *Dialog) OfferBranch(ctx context.Context, branch string, to BranchTarget, sdp []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.offerBranch(ctx, branch, to, sdp)
}

// InitialResponse is one response from one branch of the initial INVITE.
type InitialResponse struct {
	Branch string         // our Via branch of that copy of the INVITE
	CSeq   uint32         // its CSeq number
	Code   int            // its status
	ToTag  string         // the callee's tag
	Source netip.AddrPort // where the response came from
	SDP    []byte         // its body
	// For a 2xx: the callee as the caller will reach it, the route set
	// toward the caller, and the INVITE's SDP as received.
	Callee       Party
	CallerRoutes []string
	Offer        []byte
}

// OnInitialResponse handles a response to the initial INVITE and returns
// the body to relay upstream: a final ≥ 300 frees its branch, a 18x/2xx
// is the answer (or the late offer), and a 2xx confirms the dialog.
func (d *Dialog) OnInitialResponse(ctx context.Context, r InitialResponse) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.Code >= 300 {
		d.branchFailed(ctx, r.Branch)
		return r.SDP, nil
	}
	body, err := d.branchResponse(ctx, r.Branch, r.Code, r.ToTag, r.Source, r.SDP)
	if r.Code >= 200 {
		if err == nil && d.state == StateEarly && !d.ended {
			// The 2xx that answers the call: its copies are relayed the same.
			d.sent2xx = &sent2xx{Key: txKey("INVITE", r.CSeq), Tag: r.ToTag, Orig: r.CSeq, SDP: body}
		}
		offer := r.Offer
		if offer == nil {
			offer = d.offer // a dialog restored while early
		}
		d.confirm(ctx, r.Branch, r.Callee, r.CallerRoutes, offer, r.SDP)
	}
	return body, err
}

// BranchFailed frees a branch that ended without a response (timeout,
// transport error).
func (d *Dialog) BranchFailed(ctx context.Context, branch string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.branchFailed(ctx, branch)
}

// Fail ends an early dialog whose INVITE got no 2xx.
func (d *Dialog) Fail(ctx context.Context, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail(ctx, reason)
}

// Request handles an in-dialog request from side `from` with CSeq cseq as
// that side wrote it. It returns the CSeq the other side expects (after
// requests sipanchor sent in from's name) and the body to forward.
func (d *Dialog) Request(ctx context.Context, from relay.Leg, calleeTag, method string, cseq uint32, sdp []byte) (uint32, []byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fwd := d.forwardCSeq(from, cseq)
	body, err := d.request(ctx, from, calleeTag, method, fwd, sdp)
	return fwd, body, err
}

// Response handles a response to an in-dialog request (cseq as forwarded)
// and returns the body to relay.
func (d *Dialog) Response(ctx context.Context, method string, cseq uint32, code int, sdp []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.response(ctx, method, cseq, code, sdp)
}

// Ack handles an ACK from side `from`: the CSeq to forward, and with SDP,
// the answer to an offer made in a 2xx.
func (d *Dialog) Ack(ctx context.Context, from relay.Leg, cseq uint32, sdp []byte) (uint32, []byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if from == relay.Caller && d.state == StateConfirmed {
		d.ackSeen()
	}
	fwd := d.forwardCSeq(from, cseq)
	if len(sdp) == 0 {
		return fwd, sdp, nil
	}
	body, err := d.ack(ctx, from, fwd, sdp)
	return fwd, body, err
}
