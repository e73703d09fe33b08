package ua

import (
	"context"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
)

// onRequest handles a request from the socket: retransmissions are
// absorbed, then it goes to the call it belongs to.
func (u *UA) onRequest(req *sip.Request, src netip.AddrPort) {
	if req.CallID() == nil || req.CSeq() == nil || req.Via() == nil || req.From() == nil || req.To() == nil {
		return // not answerable
	}
	if u.absorb(req, src) {
		return
	}
	switch {
	case req.Method == sip.ACK:
		u.gotACK(req)
		if c := u.call(req.CallID().Value()); c != nil {
			c.onACK(req)
		}
	case req.Method == sip.CANCEL:
		u.onCancel(req)
	case tagOf(req.To().Params) != "":
		if c := u.call(req.CallID().Value()); c != nil {
			c.onRequest(req)
		} else {
			u.reply(req, sip.StatusCallTransactionDoesNotExists, reasonFor(481))
		}
	case req.Method == sip.INVITE:
		u.onInvite(req)
	default:
		u.outOfDialog(req)
	}
}

// outOfDialog answers requests outside any dialog: OPTIONS, NOTIFY,
// MESSAGE and INFO get 200.
func (u *UA) outOfDialog(req *sip.Request) {
	switch req.Method {
	case sip.OPTIONS, sip.NOTIFY, sip.MESSAGE, sip.INFO:
		u.reply(req, sip.StatusOK, "OK")
	case sip.BYE, sip.UPDATE, sip.PRACK:
		u.reply(req, sip.StatusCallTransactionDoesNotExists, reasonFor(481))
	default:
		u.reply(req, sip.StatusNotImplemented, reasonFor(501))
	}
}

// onInvite starts an incoming call and answers it per the AnswerPolicy on
// a goroutine of its own.
func (u *UA) onInvite(req *sip.Request) {
	callID := req.CallID().Value()
	if u.call(callID) != nil { // the same INVITE by another path (RFC 3261 section 8.2.2.2)
		u.reply(req, sip.StatusLoopDetected, reasonFor(482))
		return
	}
	c := newCall(u, callID, false)
	c.localURI, c.localTag = req.To().Address, newID()
	c.remoteURI, c.remoteTag = req.From().Address, tagOf(req.From().Params)
	c.target = req.From().Address
	if ct := req.Contact(); ct != nil {
		c.target = *ct.Address.Clone()
	}
	c.routes = routeSet(req)
	c.remoteCSeq = req.CSeq().SeqNo
	c.invite = req
	if u.addCall(c) != nil {
		return
	}
	p := u.answerPolicy()
	if !u.goes(func() { c.answer(p) }) {
		c.end("local")
	}
}

// response builds a response of the call to req (our To tag; Contact on
// an INVITE/UPDATE's 1xx/2xx).
func (c *Call) response(req *sip.Request, code int, reason string, body []byte) *sip.Response {
	if reason == "" {
		reason = reasonFor(code)
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if code > 100 {
		res.To().Params.Add("tag", c.localTag)
	}
	if (req.Method == sip.INVITE || req.Method == sip.UPDATE) && code > 100 && code < 300 {
		res.AppendHeader(c.u.contact())
	}
	if body != nil {
		withSDP(res, body)
	}
	return res
}

// answer answers an incoming INVITE per p: ring, then reject or accept.
func (c *Call) answer(p AnswerPolicy) {
	var offer *remoteMedia
	if body := c.invite.Body(); len(body) > 0 {
		r, err := parseSDP(body)
		if err != nil {
			c.log.Warn("offer refused", "err", err)
			c.reject(sip.StatusNotAcceptableHere, "")
			c.deliver()
			return
		}
		offer = &r
	}
	if p.RingFor > 0 {
		ok := c.ring()
		c.deliver()
		if !ok || !c.ringFor(p.RingFor) {
			return
		}
	} else {
		defer c.deliver()
	}
	if p.Code >= 300 {
		c.reject(p.Code, p.Reason)
		return
	}
	c.accept(p, offer)
}

// deliver queues the call for Incoming.
func (c *Call) deliver() {
	select {
	case c.u.incoming <- c:
	default:
		c.log.Warn("incoming call not delivered: queue full")
	}
}

// ring sends 180; false if the call was cancelled already.
func (c *Call) ring() bool {
	c.mu.Lock()
	if c.inviteFinal {
		c.mu.Unlock()
		return false
	}
	c.state = StateRinging
	closeCh(c.provisional)
	c.mu.Unlock()
	c.u.respond(c.invite, c.response(c.invite, sip.StatusRinging, "", nil))
	return true
}

// ringFor waits d; false if the call was cancelled meanwhile.
func (c *Call) ringFor(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.cancelled:
	case <-c.done:
	case <-c.u.closed:
	}
	return false
}

// finalOnce marks the INVITE as answered; false if it already was
// (CANCEL).
func (c *Call) finalOnce() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inviteFinal {
		return false
	}
	c.inviteFinal = true
	return true
}

// reject sends a final response of 300 or more, retransmitted until ACK.
func (c *Call) reject(code int, reason string) {
	if !c.finalOnce() {
		return
	}
	c.u.respondUntilACK(c.invite, c.response(c.invite, code, reason, nil), nil)
	c.log.Info("incoming call rejected", "code", code)
	c.fail(&StatusError{Code: code, Reason: reason}, "local")
}

// accept answers 200 with an SDP answer (or an offer, when the INVITE had
// none), retransmitted until ACK; without ACK in 32 s it hangs up.
func (c *Call) accept(p AnswerPolicy, offer *remoteMedia) {
	ctx, cancel := context.WithTimeout(context.Background(), txTimeout)
	defer cancel()
	ep, err := c.u.newEndpoint(ctx)
	if err != nil {
		c.log.Warn("no RTP socket for incoming call", "err", err)
		c.reject(sip.StatusInternalServerError, "No RTP socket")
		return
	}
	if !c.finalOnce() {
		ep.close()
		return
	}
	c.mu.Lock()
	c.media = newMedia(c.u, c.log, ep)
	ours, dtmf := dirSendRecv, ptEvent
	if offer != nil {
		ours, dtmf = answerDir(offer.dir), offer.dtmfPT
		c.media.negotiated(*offer, ours)
		c.remoteSDP = c.invite.Body()
	} else {
		c.ackOffer = true
	}
	body, _ := c.newSDP(ep.public, ours, dtmf)
	c.state = StateConfirmed
	c.mu.Unlock()
	c.u.respondUntilACK(c.invite, c.response(c.invite, p.Code, p.Reason, body), c.noACK)
	c.settle(nil)
	c.log.Info("incoming call answered", "code", p.Code, "rtp", ep.public)
}

// noACK hangs up a call whose 2xx was never ACKed (RFC 3261 section
// 13.3.1.4).
func (c *Call) noACK() {
	c.log.Warn("no ACK for the 2xx: hanging up")
	ctx, cancel := context.WithTimeout(context.Background(), txTimeout)
	defer cancel()
	_ = c.Hangup(ctx)
}

// onACK takes the SDP answer an ACK carries after a 2xx that offered.
func (c *Call) onACK(ack *sip.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ackOffer || len(ack.Body()) == 0 || c.media == nil {
		return
	}
	r, err := parseSDP(ack.Body())
	if err != nil {
		c.log.Warn("SDP answer in ACK unusable", "err", err)
		return
	}
	c.ackOffer = false
	c.remoteSDP = ack.Body()
	c.media.negotiated(r, *c.media.ourDir.Load())
}

// onCancel answers a CANCEL: 200, then 487 to the INVITE if it is still
// unanswered.
func (u *UA) onCancel(req *sip.Request) {
	c := u.call(req.CallID().Value())
	if c == nil || c.outgoing || branchOf(c.invite) != branchOf(req) {
		u.reply(req, sip.StatusCallTransactionDoesNotExists, reasonFor(481))
		return
	}
	u.reply(req, sip.StatusOK, "OK")
	if !c.finalOnce() {
		return
	}
	c.mu.Lock()
	closeCh(c.cancelled)
	c.mu.Unlock()
	u.respondUntilACK(c.invite, c.response(c.invite, sip.StatusRequestTerminated, "", nil), nil)
	c.log.Info("incoming call cancelled")
	c.fail(&StatusError{Code: sip.StatusRequestTerminated, Reason: reasonFor(487)}, "remote")
}

// onRequest handles a request inside the call's dialog.
func (c *Call) onRequest(req *sip.Request) {
	c.mu.Lock()
	seq := req.CSeq().SeqNo
	stale := c.remoteCSeq != 0 && seq <= c.remoteCSeq
	if !stale {
		c.remoteCSeq = seq
	}
	c.mu.Unlock()
	if stale {
		c.u.reply(req, sip.StatusInternalServerError, "CSeq out of order")
		return
	}
	switch req.Method {
	case sip.BYE:
		c.u.respond(req, c.response(req, sip.StatusOK, "", nil))
		c.end("remote")
	case sip.INVITE, sip.UPDATE:
		c.onOffer(req)
	case sip.OPTIONS, sip.NOTIFY, sip.INFO, sip.MESSAGE:
		c.u.respond(req, c.response(req, sip.StatusOK, "", nil))
	default:
		c.u.respond(req, c.response(req, sip.StatusNotImplemented, "", nil))
	}
}

// onOffer answers a re-INVITE or UPDATE: with SDP, 200 with an answer and
// RTP follows the new remote address; without, 200 with an offer (INVITE).
func (c *Call) onOffer(req *sip.Request) {
	if err := c.confirmed(); err != nil {
		c.u.respond(req, c.response(req, sip.StatusRequestPending, "Not confirmed", nil))
		return
	}
	var r remoteMedia
	if body := req.Body(); len(body) > 0 {
		var err error
		if r, err = parseSDP(body); err != nil {
			c.u.respond(req, c.response(req, sip.StatusNotAcceptableHere, "", nil))
			return
		}
	}
	c.mu.Lock()
	if ct := req.Contact(); ct != nil {
		c.target = *ct.Address.Clone() // target refresh
	}
	m := c.media
	ours, dtmf := *m.ourDir.Load(), ptEvent
	if len(req.Body()) > 0 {
		ours, dtmf = answerDir(r.dir), r.dtmfPT
		c.remoteSDP = req.Body()
		m.negotiated(r, ours)
	} else {
		c.ackOffer = req.Method == sip.INVITE
	}
	body, _ := c.newSDP(m.local(), ours, dtmf)
	c.mu.Unlock()
	res := c.response(req, sip.StatusOK, "", body)
	if req.Method == sip.INVITE {
		c.u.respondUntilACK(req, res, nil)
	} else {
		c.u.respond(req, res)
	}
	c.log.Info("re-offer answered", "method", req.Method, "remote_rtp", r.addr, "dir", ours)
}
