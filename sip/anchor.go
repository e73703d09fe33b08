package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"sipanchor/dialog"
	"sipanchor/relay"

	"github.com/emiago/sipgo/sip"
)

// anchor connects one proxied transaction to its dialog: the engage hooks
// of DESIGN.md's event table, called as the transaction's messages pass.
// Every call takes the dialog's lock for that one event only: holding it
// across a transaction would deadlock re-INVITE glare.
type anchor struct {
	d       *dialog.Dialog
	initial bool      // the dialog-creating INVITE
	from    relay.Leg // in-dialog: who sent the request
	method  string
	cseq    uint32 // as the other side sees it (translated)
	orig    uint32 // as the sender wrote it
	offer   []byte // the initial INVITE's SDP as received
}

// translate sets a forwarded request's CSeq to what the other side
// expects (after requests sipanchor sent in the sender's name).
func (a *anchor) translate(r *sip.Request) {
	if a != nil && !a.initial && a.cseq != a.orig {
		r.CSeq().SeqNo = a.cseq
	}
}

// restore puts the sender's CSeq back into a response relayed to it.
func (a *anchor) restore(up *sip.Response) {
	if a != nil && !a.initial && a.cseq != a.orig && up.CSeq() != nil {
		up.CSeq().SeqNo = a.orig
	}
}

// engage runs the request-side hooks before req is forwarded. It returns
// nil when the request does not concern a tracked dialog, or a SIP status
// when the request must be refused (488 for SDP we cannot relay, 503 when
// media ports ran out). peer is the trusted peer req came from ("" = none).
func (p *Proxy) engage(req *sip.Request, peer, user string) (*anchor, int, string) {
	if p.dialogs == nil {
		return nil, 0, ""
	}
	ctx := context.Background()
	cid := callID(req)
	fromTag, _ := req.From().Params.Get("tag")
	cseq := req.CSeq().SeqNo
	if req.IsInvite() && !inDialog(req) {
		contact := ""
		if c := req.Contact(); c != nil {
			cc := c.Clone()
			h := &sip.ContactHeader{Address: cc.Address, Params: cc.Params}
			addAlias(contactHolder{h}, req.Source(), strings.ToLower(req.Transport()))
			contact = h.Address.String()
		}
		src, _ := netip.ParseAddrPort(req.Source())
		branch, _ := req.Via().Params.Get("branch")
		d := p.dialogs.Begin(dialog.InviteInfo{
			CallID: cid, FromTag: fromTag,
			FromURI: "<" + req.From().Address.String() + ">", ToURI: "<" + req.To().Address.String() + ">",
			Contact: contact, CSeq: cseq, SDP: req.Body(), Source: src,
			NAT: contact != "" && strings.Contains(contact, aliasParam+"=") || sdpPrivate(req.Body()),
			Set: p.relaySet(req.Recipient), CallerRoutes: p.routesToCaller(req),
			Peer: peer, User: user, Branch: branch,
		})
		return &anchor{d: d, initial: true, method: "INVITE", cseq: cseq, offer: req.Body()}, 0, ""
	}
	if !inDialog(req) {
		return nil, 0, ""
	}
	toTag, _ := req.To().Params.Get("tag")
	d, leg, ok := p.dialogs.Find(cid, fromTag, toTag)
	if !ok {
		return nil, 0, ""
	}
	method := string(req.Method)
	calleeTag := toTag // in an early dialog, the tag picks the forked branch
	if leg == relay.Callee {
		calleeTag = fromTag
	}
	fwd, body, err := d.Request(ctx, leg, calleeTag, method, cseq, req.Body())
	if err != nil {
		code, reason := relayStatus(err)
		p.log.Warn("relay refused the offer", "call_id", cid, "method", method, "err", err)
		return nil, code, reason
	}
	setBody(req, body)
	return &anchor{d: d, from: leg, method: method, cseq: fwd, orig: cseq}, 0, ""
}

// relaySet picks the relay set of a new call: the first [[relay.set]]
// whose match glob takes "sip:user@host" of the Request-URI, else the
// first set without a match, else "" (the engine's default).
func (p *Proxy) relaySet(ruri sip.Uri) string {
	key := matchKey(ruri)
	def := ""
	for _, s := range p.cfg.Relay.Sets {
		if s.Match == "" {
			if def == "" {
				def = strconv.Itoa(s.ID)
			}
			continue
		}
		if ok, _ := path.Match(s.Match, key); ok {
			return strconv.Itoa(s.ID)
		}
	}
	return def
}

// contactHolder lets addAlias work on a lone Contact header.
type contactHolder struct{ c *sip.ContactHeader }

func (h contactHolder) GetHeader(string) sip.Header { return h.c }

// relayStatus maps an engine error to the SIP response it decides.
func relayStatus(err error) (int, string) {
	var se *relay.SDPError
	switch {
	case errors.As(err, &se):
		return sip.StatusNotAcceptableHere, "Not Acceptable Here"
	case errors.Is(err, relay.ErrNoPorts):
		return sip.StatusServiceUnavailable, "Media Ports Exhausted"
	}
	return sip.StatusInternalServerError, "Media Relay Error"
}

// setBody replaces a message body when it changed (and Content-Length).
func setBody(m interface {
	Body() []byte
	SetBody([]byte)
}, b []byte) {
	if len(b) == 0 && len(m.Body()) == 0 {
		return
	}
	m.SetBody(b)
}

// offerBranch rewrites one branch's copy of the initial INVITE, r, which
// leaves from listener out to t.
func (a *anchor) offerBranch(r *sip.Request, branch string, out *listener, t target) error {
	if a == nil || !a.initial {
		return nil
	}
	to := dialog.BranchTarget{Cancel: cancelFor(r).String(), Dest: t.dst.String(), Listener: out.key()}
	body, err := a.d.OfferBranch(context.Background(), branch, to, r.Body())
	if a.afterCancel() {
		return errCancelled
	}
	if err != nil {
		return err
	}
	setBody(r, body)
	return nil
}

// afterCancel finishes a CANCEL that came while this transaction held the
// dialog (Dialog.Cancel does not wait): the dialog fails here. It reports
// whether the call was cancelled.
func (a *anchor) afterCancel() bool {
	if a == nil || !a.initial || !a.d.Cancelled() {
		return false
	}
	a.failed("cancelled")
	return true
}

// anchorResponse runs the hooks for a response from branch b; up is the
// copy that will be relayed upstream (nil for a final ≥ 300), whose body
// it may rewrite.
func (p *Proxy) anchorResponse(a *anchor, b *branch, res, up *sip.Response, req *sip.Request) {
	if a == nil {
		return
	}
	ctx := context.Background()
	code := res.StatusCode
	var body []byte
	var err error
	if a.initial {
		body, err = a.d.OnInitialResponse(ctx, p.initialResponse(b, res, up, req, a.offer))
	} else {
		body, err = a.d.Response(ctx, a.method, a.cseq, code, res.Body())
	}
	a.afterCancel()
	if err != nil {
		p.log.Warn("relay answer failed; SDP passed on unchanged", "call_id", callID(res), "status", code, "err", err)
		return
	}
	if up != nil {
		setBody(up, body)
	}
}

// initialResponse is what the dialog needs of a response to the initial
// INVITE.
func (p *Proxy) initialResponse(b *branch, res, up *sip.Response, req *sip.Request, offer []byte) dialog.InitialResponse {
	branchID, _ := b.req.Via().Params.Get("branch")
	src, _ := netip.ParseAddrPort(res.Source())
	toTag, _ := res.To().Params.Get("tag")
	r := dialog.InitialResponse{Branch: branchID, CSeq: res.CSeq().SeqNo, Code: res.StatusCode, ToTag: toTag, Source: src, SDP: res.Body(), Offer: offer}
	if res.IsSuccess() && up != nil {
		contact := ""
		if c := up.Contact(); c != nil {
			contact = c.Address.String()
		}
		r.Callee = dialog.Party{URI: "<" + res.To().Address.String() + ">", Tag: toTag, Contact: contact, Routes: p.routesToCallee(res)}
		r.CallerRoutes = p.routesToCaller(req)
	}
	return r
}

// branchGone frees a branch that ended without a response.
func (a *anchor) branchGone(b *branch) {
	if a == nil || !a.initial {
		return
	}
	branchID, _ := b.req.Via().Params.Get("branch")
	a.d.BranchFailed(context.Background(), branchID)
}

// done is called when the transaction ended without a 2xx.
func (a *anchor) failed(reason string) {
	if a == nil || !a.initial {
		return
	}
	a.d.Fail(context.Background(), reason)
}

// routesToCaller is the route set from us toward the caller: the
// Record-Routes the INVITE brought (proxies between the caller and us).
func (p *Proxy) routesToCaller(req *sip.Request) []string {
	var out []string
	for _, h := range req.GetHeaders("Record-Route") {
		out = append(out, h.Value())
	}
	return out
}

// routesToCallee is the route set from us toward the callee: the
// Record-Routes above ours in the 2xx, nearest first.
func (p *Proxy) routesToCallee(res *sip.Response) []string {
	var above []string
	for _, h := range res.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok && p.isUs(rr.Address) {
			break
		}
		above = append(above, h.Value())
	}
	for i, j := 0, len(above)-1; i < j; i, j = i+1, j-1 {
		above[i], above[j] = above[j], above[i]
	}
	return above
}

// tags are a message's From and To tags ("" when absent).
func tags(m sip.Message) (from, to string) {
	from, _ = m.From().Params.Get("tag")
	to, _ = m.To().Params.Get("tag")
	return from, to
}

// dialogOf finds the dialog of an in-dialog message, from either side.
func (p *Proxy) dialogOf(m sip.Message) (*dialog.Dialog, relay.Leg, bool) {
	if p.dialogs == nil {
		return nil, relay.LegUnknown, false
	}
	from, to := tags(m)
	return p.dialogs.Find(callID(m), from, to)
}

// ackHook applies an ACK's SDP (the answer to an offer made in a 2xx).
func (p *Proxy) ackHook(req *sip.Request) {
	d, leg, ok := p.dialogOf(req)
	if !ok {
		return
	}
	fwd, body, err := d.Ack(context.Background(), leg, req.CSeq().SeqNo, req.Body())
	req.CSeq().SeqNo = fwd
	if len(req.Body()) == 0 {
		return
	}
	if err != nil {
		p.log.Warn("relay answer in ACK failed; SDP passed on unchanged", "call_id", callID(req), "err", err)
		return
	}
	setBody(req, body)
}

// sdpPrivate reports whether an SDP names a private or loopback-less
// unroutable address in a c= line (RFC 1918, RFC 4193, CGNAT).
func sdpPrivate(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		if !strings.HasPrefix(line, "c=") || len(f) < 3 {
			continue
		}
		if a, err := netip.ParseAddr(strings.Split(f[2], "/")[0]); err == nil && (a.IsPrivate() || netip.MustParsePrefix("100.64.0.0/10").Contains(a)) {
			return true
		}
	}
	return false
}

// endDialog sends a BYE to each end of a dialog that sipanchor ends itself
// (media timeout, lifetime, API), along the route set toward each end and
// to the address its packets come from.
func (p *Proxy) endDialog(ctx context.Context, e dialog.Ending) {
	type leg struct {
		to, from dialog.Party
		name     string
	}
	done := make(chan struct{}, 2)
	for _, l := range []leg{{e.Callee, e.Caller, "callee"}, {e.Caller, e.Callee, "caller"}} {
		go func() {
			defer func() { done <- struct{}{} }()
			code, err := p.sendBye(ctx, e.CallID, l.to, l.from, e.Reason)
			if err != nil {
				p.log.Warn("BYE not delivered", "call_id", e.CallID, "to", l.name, "err", err)
				return
			}
			p.log.Info("sip", "method", "BYE", "call_id", e.CallID, "to", l.name, "status", code, "reason", e.Reason)
		}()
	}
	<-done
	<-done
}

func (p *Proxy) sendBye(ctx context.Context, cid string, to, from dialog.Party, reason string) (int, error) {
	res, err := p.sendInDialog(ctx, sip.BYE, cid, to, from, from.CSeq+1,
		[]string{"Reason", `SIP;cause=200;text="` + strings.ReplaceAll(reason, `"`, "") + `"`}, nil)
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

// sendInDialog sends a request of sipanchor's own inside a dialog, to
// party `to` in the name of `from`: along to's route set, to the address
// its packets come from, and waits for the final response.
func (p *Proxy) sendInDialog(ctx context.Context, method sip.RequestMethod, cid string, to, from dialog.Party, cseq uint32, headers []string, body []byte) (*sip.Response, error) {
	req, err := inDialogRequest(method, cid, to, from, cseq, headers, body)
	if err != nil {
		return nil, err
	}
	ts, status, why := p.targets(req)
	if status != 0 {
		return nil, errors.New(why)
	}
	b, err := p.startBranch(req, nil, ts[0], branchPrefix+strings.ToLower(string(method))+"."+randHex(8), nil)
	if err != nil {
		return nil, err
	}
	defer b.tx.Terminate()
	timer := time.NewTimer(32 * time.Second)
	defer timer.Stop()
	for {
		select {
		case res := <-b.tx.Responses():
			if res.StatusCode >= 200 {
				if method == sip.INVITE && res.IsSuccess() {
					p.sendAck(b, res)
				}
				return res, nil
			}
		case <-b.tx.Done():
			return nil, b.tx.Err()
		case <-timer.C:
			return nil, errors.New("no final response")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// inDialogRequest builds a request from `from` to `to` in dialog cid.
func inDialogRequest(method sip.RequestMethod, cid string, to, from dialog.Party, cseq uint32, headers []string, body []byte) (*sip.Request, error) {
	var ruri sip.Uri
	if err := sip.ParseUri(to.Contact, &ruri); err != nil {
		return nil, err
	}
	r := sip.NewRequest(method, ruri)
	for _, rt := range to.Routes {
		r.AppendHeader(sip.NewHeader("Route", rt))
	}
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.AppendHeader(sip.NewHeader("From", from.URI+";tag="+from.Tag))
	r.AppendHeader(sip.NewHeader("To", to.URI+";tag="+to.Tag))
	c := sip.CallIDHeader(cid)
	r.AppendHeader(&c)
	r.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	if method == sip.INVITE && from.Contact != "" {
		r.AppendHeader(sip.NewHeader("Contact", "<"+from.Contact+">"))
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.AppendHeader(sip.NewHeader(headers[i], headers[i+1]))
	}
	if len(body) > 0 {
		r.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	r.SetBody(body)
	// Re-parse so that the header objects are typed (From/To/Route).
	m, err := sip.ParseMessage([]byte(r.String()))
	if err != nil {
		return nil, err
	}
	return m.(*sip.Request), nil
}

// sendAck acknowledges a 2xx to an INVITE sipanchor sent itself.
func (p *Proxy) sendAck(b *branch, res *sip.Response) {
	ack := b.req.Clone()
	ack.Method = sip.ACK
	ack.RemoveHeader("Via")
	ack.RemoveHeader("Content-Type")
	ack.SetBody(nil)
	ack.CSeq().MethodName = sip.ACK
	ack.ReplaceHeader(sip.HeaderClone(res.To()))
	p.addVia(ack, b.out, b.t, branchPrefix+"ack."+randHex(8))
	if err := p.cli.WriteRequest(ack, prebuilt); err != nil {
		p.log.Warn("ACK not sent", "call_id", callID(res), "err", err)
	}
}

// Move re-anchors a call (rtp_relay_update): a new relay session on new
// ports, a re-INVITE to each end with SDP pointing at it, and the old
// session deleted once both accepted. flags, if not nil, replace the legs'.
func (p *Proxy) Move(ctx context.Context, callID string, flags *[2]relay.LegFlags) error {
	if p.dialogs == nil {
		return errors.New("media anchoring is off")
	}
	ds := p.dialogs.ByCallID(callID)
	if len(ds) == 0 {
		return fmt.Errorf("call %s: %w", callID, ErrNoDialog)
	}
	d := ds[0]
	mv, err := p.dialogs.BeginMove(ctx, d, flags)
	if err != nil {
		return err
	}
	type result struct {
		sdp []byte
		err error
	}
	send := func(ri dialog.Reinvite) result {
		res, err := p.sendInDialog(ctx, sip.INVITE, callID, ri.To, ri.From, ri.CSeq, nil, ri.SDP)
		switch {
		case err != nil:
			return result{err: err}
		case !res.IsSuccess():
			return result{err: fmt.Errorf("%d %s", res.StatusCode, res.Reason)}
		case len(res.Body()) == 0:
			return result{err: errors.New("2xx without SDP")}
		}
		return result{sdp: res.Body()}
	}
	calleeC, callerC := make(chan result, 1), make(chan result, 1)
	go func() { calleeC <- send(mv.ToCallee) }()
	go func() { callerC <- send(mv.ToCaller) }()
	callee, caller := <-calleeC, <-callerC
	ok := callee.err == nil && caller.err == nil
	undo := p.dialogs.FinishMove(ctx, d, mv, ok, caller.sdp, callee.sdp)
	for _, ri := range undo {
		if r := send(ri); r.err != nil {
			p.log.Warn("putting a side back after a failed move failed", "call_id", callID, "err", r.err)
		}
	}
	if !ok {
		return fmt.Errorf("move of %s failed: callee: %v, caller: %v", callID, callee.err, caller.err)
	}
	p.log.Info("call moved to new relay ports", "call_id", callID)
	return nil
}
