package ua

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/emiago/sipgo/sip"
)

// Call places a call to target (a SIP URI, or a user of the UA's domain):
// an INVITE with an SDP offer (PCMU 0, telephone-event 101, sendrecv)
// through Server. It follows 100/18x and returns once the call is
// answered (2xx, ACK sent), or with a *StatusError after ACKing a final
// response of 300 or more. The Call is returned with any error once the
// INVITE has left. If ctx ends first, the UA gives the call up: it
// CANCELs it, or hangs up a 2xx that comes later.
func (u *UA) Call(ctx context.Context, target string) (*Call, error) {
	c, err := u.startCall(ctx, target)
	if err != nil {
		return nil, err
	}
	if err := c.WaitAnswer(ctx); err != nil {
		if ctx.Err() != nil {
			c.abandon()
		}
		return c, err
	}
	return c, nil
}

// Invite is Call that returns at the first response, provisional or
// final (for CANCEL tests): then WaitAnswer or Cancel.
func (u *UA) Invite(ctx context.Context, target string) (*Call, error) {
	c, err := u.startCall(ctx, target)
	if err != nil {
		return nil, err
	}
	select {
	case <-c.provisional:
	case <-ctx.Done():
		c.abandon()
		return c, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c, c.final
}

// WaitAnswer waits for the final response to the call's initial INVITE,
// sent or received: nil once answered, a *StatusError for 300 and more
// (487 after a CANCEL), ErrTimeout when an outgoing INVITE got nothing
// within 32 s.
func (c *Call) WaitAnswer(ctx context.Context) error {
	select {
	case <-c.answered:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.final
}

func (u *UA) startCall(ctx context.Context, target string) (*Call, error) {
	ruri, err := u.targetURI(target)
	if err != nil {
		return nil, err
	}
	ep, err := u.newEndpoint(ctx)
	if err != nil {
		return nil, err
	}
	c := newCall(u, newID(), true)
	c.localURI, c.localTag, c.remoteURI, c.target, c.cseq = u.aor(), newID(), ruri, ruri, 1
	c.media = newMedia(u, c.log, ep)
	c.mu.Lock()
	body, err := c.newSDP(ep.public, dirSendRecv, ptEvent)
	c.mu.Unlock()
	if err != nil {
		c.media.close()
		return nil, err
	}
	req := u.request(sip.INVITE, ruri, fromHeader(c.localURI, c.localTag), toHeader(ruri, ""), c.callID, 1, nil)
	req.AppendHeader(u.contact())
	withSDP(req, body)
	c.invite = req
	if err := u.addCall(c); err != nil {
		c.media.close()
		return nil, err
	}
	tx, err := u.startTx(req)
	if err != nil {
		c.end("local")
		return nil, err
	}
	if !u.goes(func() { c.runInvite(tx) }) {
		u.endTx(tx)
		return nil, ErrClosed
	}
	c.log.Info("calling", "target", ruri.String(), "rtp", ep.public)
	return c, nil
}

// runInvite follows the INVITE transaction to its final response.
func (c *Call) runInvite(tx *clientTx) {
	defer func() { c.u.endTx(tx) }()
	for {
		res, err := c.u.next(context.Background(), tx)
		switch {
		case err != nil:
			c.fail(err, "local")
			return
		case res.StatusCode < 200:
			c.onProvisional(res)
		case res.StatusCode < 300:
			c.onAnswer(res)
			return
		default:
			if next := c.authRetry(res); next != nil {
				c.u.endTx(tx)
				tx = next
				continue
			}
			c.onReject(res)
			return
		}
	}
}

// settle records the INVITE's outcome and wakes its waiters.
func (c *Call) settle(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inviteFinal, c.final = true, err
	closeCh(c.provisional)
	closeCh(c.answered)
}

// fail records an unanswered INVITE's outcome and ends the call, before
// its waiters wake (they see it ended).
func (c *Call) fail(err error, by string) {
	c.mu.Lock()
	c.inviteFinal, c.final = true, err
	c.mu.Unlock()
	c.end(by)
}

func (c *Call) onProvisional(res *sip.Response) {
	c.mu.Lock()
	if c.state == StateCalling {
		c.state = StateRinging
	}
	if body := res.Body(); len(body) > 0 && c.remoteSDP == nil {
		if r, err := parseSDP(body); err == nil { // early media
			c.remoteSDP = body
			c.media.negotiated(r, dirSendRecv)
		}
	}
	closeCh(c.provisional)
	cancel := c.abandoned && !c.cancelling
	c.cancelling = c.cancelling || cancel
	c.mu.Unlock()
	if cancel {
		c.u.goes(func() { _ = c.sendCancel(context.Background()) })
	}
}

// onAnswer confirms the dialog of a 2xx and ACKs it; a call given up or
// cancelled meanwhile, or an unusable SDP answer, is hung up at once.
func (c *Call) onAnswer(res *sip.Response) {
	c.mu.Lock()
	c.remoteTag = tagOf(res.To().Params)
	if ct := res.Contact(); ct != nil {
		c.target = *ct.Address.Clone()
	}
	c.routes = routeSet(res)
	slices.Reverse(c.routes)
	c.state = StateConfirmed
	c.remoteSDP = res.Body()
	r, sdpErr := parseSDP(res.Body())
	if sdpErr == nil {
		c.media.negotiated(r, dirSendRecv)
	}
	giveUp := c.abandoned || c.cancelling
	seq := c.invite.CSeq().SeqNo
	c.mu.Unlock()
	c.u.sendACK(c.request(sip.ACK, seq))
	var err error
	switch {
	case giveUp:
		err = ErrAnsweredFirst
	case sdpErr != nil:
		err = fmt.Errorf("answer: %w", sdpErr)
	}
	c.log.Info("call answered", "code", res.StatusCode, "remote_rtp", r.addr)
	if err != nil {
		c.log.Warn("answered call hung up", "err", err)
		ctx, cancel := context.WithTimeout(context.Background(), txTimeout)
		defer cancel()
		_ = c.Hangup(ctx)
	}
	c.settle(err)
}

func (c *Call) onReject(res *sip.Response) {
	c.mu.Lock()
	by := "remote"
	if c.cancelling && res.StatusCode == sip.StatusRequestTerminated {
		by = "local"
	}
	inv := c.invite
	c.mu.Unlock()
	c.u.sendACK(sameTx(inv, sip.ACK, res.To()))
	c.log.Info("call rejected", "code", res.StatusCode)
	c.fail(&StatusError{Code: res.StatusCode, Reason: res.Reason}, by)
}

// authRetry answers a first 401/407 to the INVITE, when the UA has a
// password: it ACKs the challenge and sends the INVITE again with
// credentials (new branch, next CSeq). nil when it does not.
func (c *Call) authRetry(res *sip.Response) *clientTx {
	code := res.StatusCode
	c.mu.Lock()
	if (code != sip.StatusUnauthorized && code != sip.StatusProxyAuthRequired) || c.u.cfg.Password == "" ||
		c.authTried || c.cancelling || c.abandoned {
		c.mu.Unlock()
		return nil
	}
	c.authTried = true
	old := c.invite
	c.cseq++
	req := c.u.request(sip.INVITE, old.Recipient, sip.HeaderClone(old.From()).(*sip.FromHeader),
		sip.HeaderClone(old.To()).(*sip.ToHeader), c.callID, c.cseq, nil)
	req.AppendHeader(c.u.contact())
	withSDP(req, old.Body())
	err := c.u.authorize(req, res)
	if err == nil {
		c.invite = req
	}
	c.mu.Unlock()
	c.u.sendACK(sameTx(old, sip.ACK, res.To()))
	if err != nil {
		c.log.Warn("challenge not answered", "code", code, "err", err)
		return nil
	}
	tx, err := c.u.startTx(req)
	if err != nil {
		return nil
	}
	return tx
}

// sameTx builds the ACK of a non-2xx final response or the CANCEL of an
// INVITE: same Request-URI, Via (branch), Route, From, Call-ID and CSeq
// number (RFC 3261 sections 9.1 and 17.1.1.3).
func sameTx(inv *sip.Request, method sip.RequestMethod, to *sip.ToHeader) *sip.Request {
	r := sip.NewRequest(method, inv.Recipient)
	r.AppendHeader(inv.Via().Clone())
	for _, h := range inv.GetHeaders("Route") {
		r.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.AppendHeader(sip.HeaderClone(inv.From()))
	r.AppendHeader(sip.HeaderClone(to))
	r.AppendHeader(sip.HeaderClone(inv.CallID()))
	r.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: method})
	r.SetTransport(inv.Transport())
	r.SetBody(nil)
	return r
}

// Cancel CANCELs a ringing outgoing call (after its first provisional
// response) and waits for the INVITE's final response: nil when the call
// was terminated (487, ACKed), ErrAnsweredFirst when a 2xx crossed the
// CANCEL (the call was then hung up).
func (c *Call) Cancel(ctx context.Context) error {
	c.mu.Lock()
	if !c.outgoing || c.inviteFinal || c.cancelling {
		c.mu.Unlock()
		return ErrNotCancellable
	}
	c.cancelling = true
	c.mu.Unlock()
	select {
	case <-c.provisional: // RFC 3261 section 9.1: not before a provisional response
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := c.sendCancel(ctx); err != nil {
		return err
	}
	err := c.WaitAnswer(ctx)
	var se *StatusError
	if errors.As(err, &se) && se.Code == sip.StatusRequestTerminated {
		return nil
	}
	if err == nil {
		return ErrAnsweredFirst
	}
	return err
}

// sendCancel runs the CANCEL transaction of the call's INVITE.
func (c *Call) sendCancel(ctx context.Context) error {
	c.mu.Lock()
	inv := c.invite
	c.mu.Unlock()
	res, err := c.u.do(ctx, sameTx(inv, sip.CANCEL, inv.To()))
	if err != nil {
		return err
	}
	c.log.Info("call cancelled", "code", res.StatusCode)
	return nil
}

// abandon gives up an outgoing call whose caller stopped waiting: CANCEL
// once it rings; a 2xx (now or later) is hung up.
func (c *Call) abandon() {
	c.mu.Lock()
	c.abandoned = true
	ringing := c.state == StateRinging && !c.cancelling && !c.inviteFinal
	c.cancelling = c.cancelling || ringing
	answered := c.state == StateConfirmed
	c.mu.Unlock()
	switch {
	case ringing:
		c.u.goes(func() {
			ctx, cancel := context.WithTimeout(context.Background(), txTimeout)
			defer cancel()
			_ = c.sendCancel(ctx)
		})
	case answered:
		c.u.goes(func() {
			ctx, cancel := context.WithTimeout(context.Background(), txTimeout)
			defer cancel()
			_ = c.Hangup(ctx)
		})
	}
}

// Hold re-INVITEs with a=sendonly and waits for the 2xx (ACKed).
func (c *Call) Hold(ctx context.Context) error { return c.reinvite(ctx, dirSendOnly, false) }

// Resume re-INVITEs with a=sendrecv and waits for the 2xx (ACKed).
func (c *Call) Resume(ctx context.Context) error { return c.reinvite(ctx, dirSendRecv, false) }

// Reinvite re-INVITEs with the current direction; with newPort the offer
// names a new RTP socket pair, which replaces the old one (closed) once
// the 2xx has come.
func (c *Call) Reinvite(ctx context.Context, newPort bool) error {
	m := c.rtp()
	if m == nil {
		return ErrNoMedia
	}
	return c.reinvite(ctx, *m.ourDir.Load(), newPort)
}

func (c *Call) reinvite(ctx context.Context, dir string, newPort bool) error {
	if err := c.confirmed(); err != nil {
		return err
	}
	m := c.rtp()
	ep := m.ep.Load()
	if newPort {
		var err error
		if ep, err = c.u.newEndpoint(ctx); err != nil {
			return err
		}
	}
	drop := func() {
		if newPort {
			ep.close()
		}
	}
	c.mu.Lock()
	body, err := c.newSDP(ep.public, dir, ptEvent)
	c.mu.Unlock()
	if err != nil {
		drop()
		return err
	}
	req := c.request(sip.INVITE, 0)
	withSDP(req, body)
	res, err := c.transactInvite(ctx, req)
	if err != nil {
		drop()
		return err
	}
	r, err := parseSDP(res.Body())
	if err != nil {
		drop()
		return fmt.Errorf("re-INVITE answer: %w", err)
	}
	c.mu.Lock()
	c.remoteSDP = res.Body()
	if ct := res.Contact(); ct != nil {
		c.target = *ct.Address.Clone()
	}
	ended := c.state != StateConfirmed
	c.mu.Unlock()
	if ended {
		drop()
		return ErrCallEnded
	}
	if newPort {
		m.use(ep)
	}
	m.negotiated(r, dir)
	c.log.Info("re-INVITE done", "dir", dir, "rtp", ep.public, "remote_rtp", r.addr)
	return nil
}

// transactInvite runs an in-dialog INVITE to its final response and ACKs
// it; a final response of 300 or more is returned as *StatusError.
func (c *Call) transactInvite(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	tx, err := c.u.startTx(req)
	if err != nil {
		return nil, err
	}
	res, err := c.u.final(ctx, tx, nil)
	c.u.endTx(tx)
	if err != nil {
		return nil, err
	}
	if res.StatusCode >= 300 {
		c.u.sendACK(sameTx(req, sip.ACK, res.To()))
		return nil, &StatusError{Code: res.StatusCode, Reason: res.Reason}
	}
	c.u.sendACK(c.request(sip.ACK, req.CSeq().SeqNo))
	return res, nil
}
