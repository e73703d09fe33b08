package sip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"sipanchor/dialog"

	"github.com/emiago/sipgo/sip"
)

// Messages of transactions this process does not have: a 2xx resent
// after its client transaction ended, or any response, CANCEL or ACK of
// an INVITE forwarded before a restart. RFC 3261 §16.7: a response that
// matches no client transaction is forwarded as a stateless proxy would,
// along its Via; the dialog, restored from the store, says what it means
// for the call.

// strayResponse handles a response that matches no client transaction,
// and the 2xx retransmissions a client transaction passes on (RFC 6026),
// if the top Via is ours. A 2xx to an INVITE is relayed statelessly:
// those are the callee's retransmissions after the INVITE transaction
// ended, or its answer to an INVITE forwarded before a restart, and the
// caller needs them until it ACKs (RFC 6026). A final ≥ 300 to an INVITE
// is strayFinal's. Anything else is late: sipgo runs each message on its
// own goroutine, so a 180 can arrive after the 200 that ended its
// transaction, and relaying it would put a 180 after the 200 at the
// caller.
func (p *Proxy) strayResponse(res *sip.Response) {
	switch strayKind(res) {
	case strayDropped:
		p.log.Debug("late response dropped", "call_id", callID(res), "status", res.StatusCode)
		return
	case strayFailure:
		if p.viaIsUs(res) {
			p.strayFinal(res)
		}
		return
	}
	if !p.viaIsUs(res) {
		return
	}
	up := upstream(res)
	if up.Via() == nil {
		return
	}
	addAlias(up, res.Source(), strings.ToLower(res.Transport())) // as upstreamOf does
	p.anchorStray(res, up)
	if err := p.sendStateless(up); err != nil {
		p.log.Debug("stray response not relayed", "call_id", callID(res), "status", res.StatusCode, "err", err)
	}
}

// sendStateless relays a response along its top Via with no transaction
// (RFC 3261 §16.7 step 10, §18.2.2): to the Via's received address (else
// its host) and rport (else its port), over UDP from the listener that
// address's messages came in on — no state of sipgo's needed, so this
// works for the retransmitted 2xx of an INVITE forwarded before a restart.
// Over TCP it needs the connection the request came on.
func (p *Proxy) sendStateless(res *sip.Response) error {
	v := res.Via()
	host := v.Host
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	port := v.Port
	if rp, ok := v.Params.Get("rport"); ok && rp != "" {
		if n, err := strconv.Atoi(rp); err == nil {
			port = n
		}
	}
	if port <= 0 || port > 65535 {
		port = 5060
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	tr := strings.ToLower(v.Transport)
	if err != nil || tr != "udp" {
		res.SetTransport(v.Transport)
		res.SetDestination(net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)))
		return p.tp.WriteMsg(res)
	}
	dst := netip.AddrPortFrom(a.Unmap(), uint16(port))
	l, err := p.outbound("udp", dst, "")
	if err != nil {
		return err
	}
	_, err = l.pc.WriteTo([]byte(res.String()), net.UDPAddrFromAddrPort(dst))
	return err
}

// stray is what becomes of a response without a transaction.
type stray uint8

const (
	strayDropped stray = iota // late: dropped
	straySuccess              // a 2xx to an INVITE: relayed
	strayFailure              // a final ≥ 300 to an INVITE: ACKed, maybe relayed
)

// strayKind sorts a response without a transaction; only those to an
// INVITE, with a Via to follow back, are worth anything.
func strayKind(res *sip.Response) stray {
	if res.CSeq() == nil || res.CSeq().MethodName != sip.INVITE || res.Via() == nil || res.Via().Params == nil {
		return strayDropped
	}
	switch {
	case res.IsSuccess():
		return straySuccess
	case res.StatusCode >= 300:
		return strayFailure
	}
	return strayDropped
}

// viaIsUs: the response's top Via is one of ours, with our branch prefix.
func (p *Proxy) viaIsUs(res *sip.Response) bool {
	v := res.Via()
	b, _ := v.Params.Get("branch")
	return strings.HasPrefix(b, branchPrefix) && p.isUs(sip.Uri{Host: v.Host, Port: v.Port})
}

// strayFinal handles a final response ≥ 300 to an INVITE of ours that no
// client transaction matches: that transaction was lost in a restart, or
// it ended and this is a retransmission (our ACK was lost). The response
// is ACKed as the client transaction would have done (RFC 3261
// §17.1.1.3): a stateless forward of the caller's ACK would not reach the
// callee's transaction, whose branch was our old process's. When it ends
// the last pending branch of a restored early dialog, or rejects a
// re-INVITE its dialog saved in flight, it is relayed along its Via as
// well (§16.7: a response without a transaction is forwarded as a
// stateless proxy would), since no server transaction of ours will give
// the sender a final response; the caller's ACK of an initial INVITE's
// ends here (finalACK). A retransmission is not relayed again: the
// sender had it.
func (p *Proxy) strayFinal(res *sip.Response) {
	log := p.log.With("call_id", callID(res), "status", res.StatusCode)
	to, relay, orig := p.anchorStrayFinal(res)
	if err := p.ackFinal(res, to); err != nil {
		log.Info("ACK of a final response without its transaction not sent", "err", err)
	}
	if !relay {
		log.Debug("final response without its transaction ACKed")
		return
	}
	up := upstream(res)
	if up.Via() == nil {
		return
	}
	up.CSeq().SeqNo = orig
	if err := p.sendStateless(up); err != nil {
		log.Info("final response after a restart not relayed", "err", err)
		return
	}
	log.Info("final response after a restart relayed", "peer", res.Source())
}

// anchorStrayFinal gives a final response ≥ 300 without its transaction
// to its dialog (Dialog.StrayFinal): whether to relay it, with which
// CSeq, and how its INVITE left, when the dialog kept it.
func (p *Proxy) anchorStrayFinal(res *sip.Response) (to dialog.BranchTarget, relay bool, orig uint32) {
	d, _, ok := p.dialogOf(res)
	if !ok {
		return to, false, 0
	}
	branchID, _ := res.Via().Params.Get("branch")
	return d.StrayFinal(context.Background(), branchID, res.CSeq().SeqNo, res.StatusCode)
}

// ackFinal ACKs a final response ≥ 300 (RFC 3261 §17.1.1.3) whose INVITE
// left as to says; without it (the dialog is gone: a retransmission),
// from the response alone, back where it came from, with its To URI for
// the Request-URI: the next hop matches an ACK by its Via branch
// (§17.2.3), which is the response's.
func (p *Proxy) ackFinal(res *sip.Response, to dialog.BranchTarget) error {
	var ack *sip.Request
	var err error
	if to == (dialog.BranchTarget{}) {
		ack, err = p.ackFromResponse(res)
	} else {
		ack, err = p.restoredRequest(to, sip.ACK)
	}
	if err != nil {
		return err
	}
	ack.ReplaceHeader(sip.HeaderClone(res.To()))
	return p.cli.WriteRequest(ack, prebuilt)
}

// ackFromResponse builds the ACK of a non-2xx final response from the
// response, aimed at its source.
func (p *Proxy) ackFromResponse(res *sip.Response) (*sip.Request, error) {
	src, err := netip.ParseAddrPort(res.Source())
	if err != nil {
		return nil, err
	}
	via := res.Via().Clone()
	via.Params.Remove("received")
	if via.Params.Has("rport") {
		via.Params.Add("rport", "")
	}
	ack := hopByHop(sip.ACK, res.To().Address, via, nil, res)
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	out, err := p.outbound(strings.ToLower(via.Transport), src, "")
	if err != nil {
		return nil, err
	}
	aim(ack, out, src)
	return ack, nil
}

// restoredRequest is the CANCEL (or, with method ACK, the ACK without its
// To) of a branch of an initial INVITE, from what its dialog kept of it,
// aimed where the INVITE went.
func (p *Proxy) restoredRequest(to dialog.BranchTarget, method sip.RequestMethod) (*sip.Request, error) {
	m, err := sip.ParseMessage([]byte(to.Cancel))
	if err != nil {
		return nil, err
	}
	r, ok := m.(*sip.Request)
	if !ok || r.Via() == nil || r.CSeq() == nil {
		return nil, errors.New("saved CANCEL is not a request")
	}
	dst, err := netip.ParseAddrPort(to.Dest)
	if err != nil {
		return nil, err
	}
	out, err := p.outbound(strings.ToLower(r.Via().Transport), dst, to.Listener)
	if err != nil {
		return nil, err
	}
	aim(r, out, dst)
	r.Method = method
	r.CSeq().MethodName = method
	return r, nil
}

// finalACK reports whether an ACK acknowledges a final response ≥ 300
// to a call's INVITE (the dialog layer knows it by the INVITE's Via
// branch): hop by hop (RFC 3261 §17.1.1.3), it goes no further. Its
// transaction is gone (a restart, or sipgo ended it); the callee's final
// response was ACKed by us, then or by strayFinal.
func (p *Proxy) finalACK(req *sip.Request) bool {
	if p.dialogs == nil {
		return false
	}
	branch, _ := req.Via().Params.Get("branch")
	fromTag, toTag := tags(req)
	return p.dialogs.FinalACK(context.Background(), callID(req), fromTag, toTag, branch)
}

// cancelLost answers a CANCEL that matched no INVITE transaction. If its
// INVITE was forwarded before a restart and the call's early dialog was
// restored, the CANCEL is answered 200 and each pending branch gets the
// CANCEL the old process would have sent (RFC 3261 §16.10); the callees'
// 487s then end the call and reach the caller (strayFinal). The caller is
// not sent a 487 of ours: it would need the INVITE's whole Via stack,
// which the callee's 487 carries. Otherwise 481 (§9.2).
func (p *Proxy) cancelLost(req *sip.Request, tx sip.ServerTransaction) {
	var to []dialog.BranchTarget
	ok := false
	if p.dialogs != nil && !inDialog(req) {
		fromTag, _ := tags(req)
		if d, found := p.dialogs.Get(callID(req), fromTag); found {
			branch, _ := req.Via().Params.Get("branch")
			to, ok = d.CancelRestored(context.Background(), branch)
		}
	}
	if !ok {
		p.reply(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	p.reply(req, tx, sip.StatusOK, "OK")
	log := p.log.With("call_id", callID(req))
	for _, t := range to {
		c, err := p.restoredRequest(t, sip.CANCEL)
		if err != nil {
			log.Warn("CANCEL of a branch after a restart not sent", "target", t.Dest, "err", err)
			continue
		}
		p.sendCancel(c, log)
	}
}

// anchorStray gives a 2xx that matches no transaction to its dialog: the
// INVITE (initial or re-INVITE) was forwarded before a restart, and the
// dialog was restored with its relay sessions and the exchange in flight;
// or the 2xx is a copy of one relayed already. The 2xx is then answered
// by the relay like any other (up's SDP rewritten); an initial one
// confirms the dialog.
func (p *Proxy) anchorStray(res, up *sip.Response) {
	d, _, ok := p.dialogOf(res)
	if !ok {
		return
	}
	_, toTag := tags(res)
	if !d.Early() {
		p.anchorStrayConfirmed(d, res, up)
		return
	}
	branchID, _ := res.Via().Params.Get("branch")
	src, _ := netip.ParseAddrPort(res.Source())
	contact := ""
	if c := up.Contact(); c != nil {
		contact = c.Address.String()
	}
	body, err := d.OnInitialResponse(context.Background(), dialog.InitialResponse{
		Branch: branchID, CSeq: res.CSeq().SeqNo, Code: res.StatusCode, ToTag: toTag, Source: src, SDP: res.Body(),
		Callee: dialog.Party{URI: "<" + res.To().Address.String() + ">", Tag: toTag, Contact: contact, Routes: p.routesToCallee(res)},
	})
	if err != nil {
		p.log.Warn("relay answer of a 2xx after a restart failed; SDP passed on unchanged", "call_id", callID(res), "err", err)
		return
	}
	setBody(up, body)
	p.log.Info("early dialog answered after a restart", "call_id", callID(res))
}

// anchorStrayConfirmed gives a 2xx in a confirmed dialog the body the
// dialog says (a copy of the last 2xx relayed: that one's; a re-INVITE's
// saved with the dialog before a restart: the relay's answer), and gives
// the sender back its own CSeq.
func (p *Proxy) anchorStrayConfirmed(d *dialog.Dialog, res, up *sip.Response) {
	if up.CSeq() == nil {
		return
	}
	_, toTag := tags(res)
	body, orig, ok, err := d.StrayResponse(context.Background(), res.CSeq().SeqNo, res.StatusCode, toTag, res.Body())
	if !ok {
		return
	}
	up.CSeq().SeqNo = orig
	if err != nil {
		p.log.Warn("relay answer of a re-INVITE's 2xx after a restart failed; SDP passed on unchanged", "call_id", callID(res), "err", err)
		return
	}
	setBody(up, body)
	p.log.Debug("2xx without its transaction relayed from the dialog", "call_id", callID(res), "cseq", orig)
}
