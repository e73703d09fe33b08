package dialog

import (
	"context"
	"fmt"

	"sipanchor/relay"
)

// exchange is one offer/answer in progress (RFC 3264): who sent the
// request, and who offered (the requester, or with a request without SDP,
// the responder in its 2xx, answered in the ACK). Glare makes two of them
// live at once, so they are kept per transaction.
type exchange struct {
	requester relay.Leg
	offerer   relay.Leg // LegUnknown until an offer is seen
	offer     []byte
	answer    []byte // set once an answer came (a reliable 18x may carry it before the 2xx)
	branch    string // the relay session it concerns
	early     bool   // inside an early dialog: the call is not answered yet
}

func txKey(method string, cseq uint32) string { return fmt.Sprint(method, " ", cseq) }

// request is d.req for an exchange's session.
func (d *Dialog) exchangeReq(x *exchange, from relay.Leg, sdp []byte) *relay.Request {
	r := d.req(x.branch, from, sdp)
	r.Early = x.early
	return r
}

// request handles an in-dialog request from side `from` (DESIGN:
// re-INVITE/UPDATE with SDP → Offer; BYE → Delete the call), in an early
// dialog too (PRACK, UPDATE before the 2xx). calleeTag names the callee's
// side of the dialog, which in an early dialog picks the forked branch.
// It returns the body to forward. Call locked.
func (d *Dialog) request(ctx context.Context, from relay.Leg, calleeTag, method string, cseq uint32, sdp []byte) ([]byte, error) {
	p := &d.caller
	if from == relay.Callee {
		p = &d.callee
	}
	p.CSeq = max(p.CSeq, cseq)
	if d.ended {
		return sdp, nil
	}
	switch method {
	case "BYE":
		d.end("BYE from " + from.String())
		return sdp, nil
	case "INVITE", "UPDATE", "PRACK":
	default:
		d.m.persist(d)
		return sdp, nil
	}
	branch, ok := d.branchOf(calleeTag)
	if !ok {
		return sdp, nil // an early dialog no branch answered for: nothing anchored
	}
	if len(sdp) > 0 && method == "PRACK" {
		if x := d.earlyOA[branch]; x != nil && x.offerer == from.Other() && x.answer == nil {
			return d.answerEarlyOffer(ctx, x, sdp)
		}
	}
	if len(sdp) == 0 && method != "INVITE" {
		return sdp, nil // only an INVITE without SDP asks the other side to offer
	}
	x := &exchange{requester: from, branch: branch, early: d.state == StateEarly}
	d.pending[txKey(method, cseq)] = x
	if !d.engaged || len(sdp) == 0 {
		return sdp, nil
	}
	rep, err := d.m.engine.Offer(ctx, d.exchangeReq(x, from, sdp))
	if err != nil {
		delete(d.pending, txKey(method, cseq))
		return nil, err
	}
	x.offerer, x.offer = from, sdp
	if d.state == StateConfirmed {
		d.m.persistNow(d) // the offer and its exchange, before the request leaves
	}
	return rep.SDP, nil
}

// response handles a response to an in-dialog INVITE/UPDATE/PRACK. With
// the offer in the request, SDP here is the answer; with none, a 2xx
// offers. A failure puts the offerer's side back to its last accepted SDP,
// so the media stays as it was (RFC 3261 §14.1). Call locked.
func (d *Dialog) response(ctx context.Context, method string, cseq uint32, code int, sdp []byte) ([]byte, error) {
	k := txKey(method, cseq)
	x := d.pending[k]
	if d.ended || x == nil || code == 100 {
		return sdp, nil
	}
	final := code >= 200
	if code >= 300 {
		delete(d.pending, k)
		d.restore(ctx, x)
		return sdp, nil
	}
	answerer := x.requester.Other()
	if !d.engaged || len(sdp) == 0 {
		if final && x.offerer != relay.LegUnknown {
			delete(d.pending, k)
			if x.answer == nil {
				d.restore(ctx, x) // no answer came: nothing changed
			} else {
				d.accept(x)
			}
		}
		return sdp, nil
	}
	if x.offerer == relay.LegUnknown || x.offerer == answerer {
		// No offer in the request: this one offers, the ACK answers.
		rep, err := d.m.engine.Offer(ctx, d.exchangeReq(x, answerer, sdp))
		if err != nil {
			return nil, err
		}
		x.offerer, x.offer = answerer, sdp
		if final && method == "INVITE" {
			d.sent2xx = &sent2xx{Key: k, Orig: cseq - d.offset[legIndex(x.requester)], SDP: rep.SDP}
		}
		return rep.SDP, nil
	}
	rep, err := d.m.engine.Answer(ctx, d.exchangeReq(x, answerer, sdp))
	if err != nil {
		return nil, err
	}
	x.answer = sdp
	if final {
		delete(d.pending, k)
		if method == "INVITE" {
			d.sent2xx = &sent2xx{Key: k, Orig: cseq - d.offset[legIndex(x.requester)], SDP: rep.SDP}
		}
		d.accept(x) // saves sent2xx too
	}
	return rep.SDP, nil
}

// accept records a completed exchange's SDPs as both sides' last accepted.
func (d *Dialog) accept(x *exchange) {
	if x.early {
		return // the 2xx of the INVITE settles what was accepted
	}
	d.accepted[legIndex(x.offerer)], d.accepted[legIndex(x.offerer.Other())] = x.offer, x.answer
	d.m.persistNow(d) // before the answer leaves
}

// ack handles an ACK with SDP: the answer to an offer made in a 2xx (late
// offer in the initial INVITE or in a re-INVITE without SDP). Call locked.
func (d *Dialog) ack(ctx context.Context, from relay.Leg, cseq uint32, sdp []byte) ([]byte, error) {
	k := txKey("INVITE", cseq)
	x := d.pending[k]
	if d.ended || x == nil || x.offerer != from.Other() {
		return sdp, nil
	}
	delete(d.pending, k)
	if !d.engaged || len(sdp) == 0 {
		return sdp, nil
	}
	if x.branch == "" {
		x.branch = d.branch
	}
	x.early = false
	rep, err := d.m.engine.Answer(ctx, d.exchangeReq(x, from, sdp))
	if err != nil {
		return nil, err
	}
	x.answer = sdp
	d.accept(x)
	return rep.SDP, nil
}

// restore re-applies the offerer's last accepted SDP after its new offer
// failed.
func (d *Dialog) restore(ctx context.Context, x *exchange) {
	if !d.engaged || x.offerer == relay.LegUnknown {
		return
	}
	prev := d.accepted[legIndex(x.offerer)]
	if prev == nil {
		return
	}
	if _, err := d.m.engine.Offer(ctx, d.exchangeReq(x, x.offerer, prev)); err != nil {
		d.log.Warn("restoring media after a failed offer", "err", err)
	}
}

// savedExchange is an exchange as stored with its dialog: a re-INVITE in
// flight when sipanchor stopped is answered after the restart.
type savedExchange struct {
	Key       string    `json:"key"`
	Requester relay.Leg `json:"requester"`
	Offerer   relay.Leg `json:"offerer"`
	Offer     []byte    `json:"offer,omitempty"`
	Answer    []byte    `json:"answer,omitempty"`
	Branch    string    `json:"branch,omitempty"`
}

func (d *Dialog) savedPending() []savedExchange {
	var out []savedExchange
	for k, x := range d.pending {
		if !x.early {
			out = append(out, savedExchange{k, x.requester, x.offerer, x.offer, x.answer, x.branch})
		}
	}
	return out
}

func (d *Dialog) restorePending(xs []savedExchange) {
	for _, x := range xs {
		d.pending[x.Key] = &exchange{requester: x.Requester, offerer: x.Offerer, offer: x.Offer, answer: x.Answer, branch: x.Branch}
	}
}

// sent2xx is the last 2xx to an INVITE relayed with its body rewritten:
// its sender resends it until the ACK comes (RFC 3261 §13.3.1.4), and
// each copy must reach the other side as the first did, without a new
// exchange with the relay.
type sent2xx struct {
	Key  string `json:"key"`           // txKey of the INVITE, CSeq as forwarded
	Tag  string `json:"tag,omitempty"` // the answering callee's tag (initial INVITE)
	Orig uint32 `json:"orig"`          // the CSeq its sender wrote
	SDP  []byte `json:"sdp,omitempty"` // the body relayed
}

// StrayResponse handles a final response to an INVITE that matched no
// transaction (cseq as forwarded, toTag its To tag): a copy of the last
// 2xx relayed, resent because the ACK is late, gets the body that one
// got; else it answers a re-INVITE forwarded before a restart (a
// rejection puts the offerer's media back). It returns the body to relay
// and the CSeq its sender wrote; ok is false when the dialog knows
// neither.
func (d *Dialog) StrayResponse(ctx context.Context, cseq uint32, code int, toTag string, sdp []byte) (body []byte, orig uint32, ok bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.strayResponse(ctx, cseq, code, toTag, sdp)
}

// strayResponse is StrayResponse. Call locked.
func (d *Dialog) strayResponse(ctx context.Context, cseq uint32, code int, toTag string, sdp []byte) (body []byte, orig uint32, ok bool, err error) {
	k := txKey("INVITE", cseq)
	if d.ended || d.state != StateConfirmed {
		return nil, 0, false, nil
	}
	if s := d.sent2xx; s != nil && code < 300 && s.Key == k && (s.Tag == "" || s.Tag == toTag) {
		return s.SDP, s.Orig, true, nil
	}
	x := d.pending[k]
	if x == nil {
		return nil, 0, false, nil
	}
	orig = cseq - d.offset[legIndex(x.requester)]
	body, err = d.response(ctx, "INVITE", cseq, code, sdp)
	return body, orig, true, err
}
