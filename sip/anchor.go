package sip

import (
	"context"
	"errors"
	"net/netip"
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
	cseq    uint32
	offer   []byte // the initial INVITE's SDP as received
}

// engage runs the request-side hooks before req is forwarded. It returns
// nil when the request does not concern a tracked dialog, or a SIP status
// when the request must be refused (488 for SDP we cannot relay, 503 when
// media ports ran out).
func (p *Proxy) engage(req *sip.Request) (*anchor, int, string) {
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
		d := p.dialogs.Begin(dialog.InviteInfo{
			CallID: cid, FromTag: fromTag,
			FromURI: "<" + req.From().Address.String() + ">", ToURI: "<" + req.To().Address.String() + ">",
			Contact: contact, CSeq: cseq, SDP: req.Body(), Source: src,
			NAT: contact != "" && strings.Contains(contact, aliasParam+"=") || sdpPrivate(req.Body()),
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
	d.Lock()
	body, err := d.Request(ctx, leg, method, cseq, req.Body())
	d.Unlock()
	if err != nil {
		code, reason := relayStatus(err)
		p.log.Warn("relay refused the offer", "call_id", cid, "method", method, "err", err)
		return nil, code, reason
	}
	setBody(req, body)
	if method != "INVITE" && method != "UPDATE" {
		return nil, 0, ""
	}
	return &anchor{d: d, from: leg, method: method, cseq: cseq}, 0, ""
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

// offerBranch rewrites one branch's copy of the initial INVITE.
func (a *anchor) offerBranch(r *sip.Request, branch string) error {
	if a == nil || !a.initial {
		return nil
	}
	a.d.Lock()
	body, err := a.d.OfferBranch(context.Background(), branch, r.Body())
	a.d.Unlock()
	if err != nil {
		return err
	}
	setBody(r, body)
	return nil
}

// response runs the hooks for a response from branch b; up is the copy
// that will be relayed upstream, whose body it may rewrite. final reports
// whether it ends the branch.
func (p *Proxy) anchorResponse(a *anchor, b *branch, res, up *sip.Response, req *sip.Request) {
	if a == nil {
		return
	}
	ctx := context.Background()
	branchID, _ := b.req.Via().Params.Get("branch")
	code := res.StatusCode
	a.d.Lock()
	defer a.d.Unlock()
	if !a.initial {
		body, err := a.d.Response(ctx, a.method, a.cseq, code, res.Body())
		if err != nil {
			p.log.Warn("relay answer failed; SDP passed on unchanged", "call_id", callID(res), "status", code, "err", err)
			return
		}
		if up != nil {
			setBody(up, body)
		}
		return
	}
	if code >= 300 {
		a.d.BranchFailed(ctx, branchID)
		return
	}
	src, _ := netip.ParseAddrPort(res.Source())
	toTag, _ := res.To().Params.Get("tag")
	body, err := a.d.BranchResponse(ctx, branchID, code, toTag, src, res.Body())
	if err != nil {
		p.log.Warn("relay answer failed; SDP passed on unchanged", "call_id", callID(res), "status", code, "err", err)
		body = res.Body()
	}
	setBody(up, body)
	if code >= 200 {
		contact := ""
		if c := up.Contact(); c != nil {
			contact = c.Address.String()
		}
		a.d.Confirm(ctx, branchID, dialog.Party{
			URI: "<" + res.To().Address.String() + ">", Tag: toTag, Contact: contact,
			Routes: p.routesToCallee(res),
		}, p.routesToCaller(req), a.offer, res.Body())
	}
}

// branchGone frees a branch that ended without a response.
func (a *anchor) branchGone(b *branch) {
	if a == nil || !a.initial {
		return
	}
	branchID, _ := b.req.Via().Params.Get("branch")
	a.d.Lock()
	a.d.BranchFailed(context.Background(), branchID)
	a.d.Unlock()
}

// done is called when the transaction ended without a 2xx.
func (a *anchor) failed(reason string) {
	if a == nil || !a.initial {
		return
	}
	a.d.Lock()
	a.d.Fail(context.Background(), reason)
	a.d.Unlock()
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

// ackHook applies an ACK's SDP (the answer to an offer made in a 2xx).
func (p *Proxy) ackHook(req *sip.Request) {
	if p.dialogs == nil || len(req.Body()) == 0 {
		return
	}
	fromTag, _ := req.From().Params.Get("tag")
	toTag, _ := req.To().Params.Get("tag")
	d, leg, ok := p.dialogs.Find(callID(req), fromTag, toTag)
	if !ok {
		return
	}
	d.Lock()
	body, err := d.Ack(context.Background(), leg, req.CSeq().SeqNo, req.Body())
	d.Unlock()
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
	var ruri sip.Uri
	if err := sip.ParseUri(to.Contact, &ruri); err != nil {
		return 0, err
	}
	bye := sip.NewRequest(sip.BYE, ruri)
	for _, r := range to.Routes {
		bye.AppendHeader(sip.NewHeader("Route", r))
	}
	mf := sip.MaxForwardsHeader(70)
	bye.AppendHeader(&mf)
	bye.AppendHeader(sip.NewHeader("From", from.URI+";tag="+from.Tag))
	bye.AppendHeader(sip.NewHeader("To", to.URI+";tag="+to.Tag))
	c := sip.CallIDHeader(cid)
	bye.AppendHeader(&c)
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: from.CSeq + 1, MethodName: sip.BYE})
	bye.AppendHeader(sip.NewHeader("Reason", `SIP;cause=200;text="`+strings.ReplaceAll(reason, `"`, "")+`"`))
	bye.SetBody(nil)
	// Re-parse so that the header objects are typed (From/To/Route).
	m, err := sip.ParseMessage([]byte(bye.String()))
	if err != nil {
		return 0, err
	}
	bye = m.(*sip.Request)
	ts, status, why := p.targets(bye)
	if status != 0 {
		return 0, errors.New(why)
	}
	b, err := p.startBranch(bye, nil, ts[0], branchPrefix+"bye."+randHex(8), nil)
	if err != nil {
		return 0, err
	}
	defer b.tx.Terminate()
	timer := time.NewTimer(32 * time.Second)
	defer timer.Stop()
	for {
		select {
		case res := <-b.tx.Responses():
			if res.StatusCode >= 200 {
				return res.StatusCode, nil
			}
		case <-b.tx.Done():
			return 0, b.tx.Err()
		case <-timer.C:
			return 0, errors.New("no final response")
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}
