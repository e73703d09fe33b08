package sip

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// branch is one forwarded copy of a request (RFC 3261 §16.6).
type branch struct {
	t        target
	req      *sip.Request
	tx       sip.ClientTransaction
	out      *listener
	ringing  bool // a provisional response arrived: CANCEL may be sent
	wantStop bool // CANCEL as soon as a provisional arrives
	stopped  bool // CANCEL sent
	done     bool // final response or failure
}

type branchEvent struct {
	b   *branch
	res *sip.Response // nil on failure
	err error
}

// proxy forwards req to every target in parallel and relays the responses
// upstream: provisionals as they come, every 2xx, or else the best final
// response once all branches have ended (RFC 3261 §16.7).
func (p *Proxy) proxy(req *sip.Request, stx sip.ServerTransaction, targets []target, loopHash string, a *anchor, cw *cancelWatch, forwarded func()) {
	start := time.Now()
	log := p.log.With("call_id", callID(req), "method", string(req.Method))
	in := p.inbound(req, stx)
	events := make(chan branchEvent, 8*len(targets)+8)
	var branches []*branch
	code, reason := sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
	for i, t := range targets {
		if cw.cancelled() {
			break // sipgo answered 487; a branch started now would ring on
		}
		b, err := p.startBranch(req, in, t, branchPrefix+loopHash+"."+strconv.Itoa(i)+randHex(4), a)
		if err != nil {
			log.Info("branch not started", "target", t.String(), "err", err)
			if errors.Is(err, errRelay) {
				code, reason = relayStatus(err)
			}
			continue
		}
		branches = append(branches, b)
		go relayBranch(b, events)
	}
	forwarded() // no longer pending: the relay has offered, the branches are out
	if len(branches) == 0 {
		if cw.cancelled() {
			a.failed("cancelled")
			return // sipgo sent the 487
		}
		a.failed("no branch started")
		p.reply(req, stx, code, reason)
		return
	}

	cancelled := cw.done()
	var ringTimer <-chan time.Time
	if req.IsInvite() {
		t := time.NewTimer(timerC)
		defer t.Stop()
		ringTimer = t.C
	}

	var (
		best     *sip.Response // upstream-ready
		answered bool
		pending  = len(branches)
	)
	stopOthers := func(except *branch) {
		for _, b := range branches {
			if b != except && !b.done {
				p.stopBranch(b, log)
			}
		}
	}
	for pending > 0 {
		select {
		case ev := <-events:
			b := ev.b
			if b.done {
				continue
			}
			if ev.res == nil {
				b.done = true
				pending--
				p.anchorFailure(a, b, req)
				code, reason := sip.StatusRequestTimeout, "Request Timeout"
				if !isTimeout(ev.err) {
					code, reason = sip.StatusServiceUnavailable, "Service Unavailable"
				}
				log.Info("branch failed", "target", b.t.String(), "err", ev.err)
				best = better(best, sip.NewResponseFromRequest(req, code, reason, nil))
				continue
			}
			res := ev.res
			switch {
			case res.IsProvisional():
				if !b.ringing {
					b.ringing = true
					if b.wantStop {
						p.stopBranch(b, log)
					}
				}
				if res.StatusCode > 100 && !answered {
					up := p.upstreamOf(res, b)
					a.restore(up)
					p.anchorResponse(a, b, res, up, req)
					p.respondUp(stx, up, log)
				}
			case res.IsSuccess():
				b.done = true
				pending--
				up := p.upstreamOf(res, b)
				a.restore(up)
				p.anchorResponse(a, b, res, up, req)
				p.respondUp(stx, up, log)
				if !answered {
					answered = true
					p.metrics.final(string(req.Method), res.StatusCode, time.Since(start))
					log.Info("sip", "status", res.StatusCode, "peer", req.Source(), "target", b.t.String(), "branches", len(branches), "ms", time.Since(start).Milliseconds())
				}
				if req.IsInvite() {
					stopOthers(b)
				}
			default:
				b.done = true
				pending--
				p.anchorResponse(a, b, res, nil, req)
				up := upstream(res)
				a.restore(up)
				if res.StatusCode == sip.StatusServiceUnavailable {
					// RFC 3261 §16.7 step 6: a 503 downstream is not ours to pass on.
					up.StatusCode, up.Reason = sip.StatusInternalServerError, "Server Internal Error"
				}
				best = better(best, up)
				if res.StatusCode >= 600 && req.IsInvite() {
					stopOthers(b)
				}
			}
		case <-cancelled:
			cancelled = nil
			log.Info("cancelled by caller", "peer", req.Source())
			stopOthers(nil)
		case <-ringTimer:
			ringTimer = nil
			log.Info("no answer before timer C", "after", timerC)
			stopOthers(nil)
		}
	}
	for _, b := range branches {
		b.tx.Terminate()
	}
	if !answered {
		a.failed("no 2xx")
	}
	if answered || best == nil {
		return
	}
	if err := stx.Respond(best); err != nil {
		log.Debug("final response not sent", "status", best.StatusCode, "err", err)
		return
	}
	p.metrics.final(string(req.Method), best.StatusCode, time.Since(start))
	log.Info("sip", "status", best.StatusCode, "peer", req.Source(), "branches", len(branches), "ms", time.Since(start).Milliseconds())
}

func isTimeout(err error) bool {
	return errors.Is(err, sip.ErrTransactionTimeout)
}

// better picks the response to send upstream when no branch answered:
// a 6xx wins, then the lowest class (RFC 3261 §16.7 step 6), first come
// first served within a class.
func better(cur, next *sip.Response) *sip.Response {
	switch {
	case cur == nil:
		return next
	case cur.StatusCode >= 600:
		return cur
	case next.StatusCode >= 600:
		return next
	case next.StatusCode/100 < cur.StatusCode/100:
		return next
	}
	return cur
}

// upstream is a downstream response with our Via removed, ready to relay.
func upstream(res *sip.Response) *sip.Response {
	up := res.Clone()
	up.RemoveHeader("Via")
	up.SetDestination("")
	up.SetTransport("")
	return up
}

// upstreamOf is a 1xx/2xx made ready to relay: our Via off, and the
// callee's Contact aliased when it is not where the response came from.
func (p *Proxy) upstreamOf(res *sip.Response, b *branch) *sip.Response {
	up := upstream(res)
	addAlias(up, res.Source(), b.t.transport)
	return up
}

func (p *Proxy) respondUp(stx sip.ServerTransaction, up *sip.Response, log *slog.Logger) {
	if err := stx.Respond(up); err != nil {
		log.Debug("relaying response failed", "status", up.StatusCode, "err", err)
	}
}

// anchorFailure: a branch ended without a response (timeout, transport).
func (p *Proxy) anchorFailure(a *anchor, b *branch, req *sip.Request) {
	if a == nil {
		return
	}
	if a.initial {
		a.branchGone(b)
		return
	}
	p.anchorResponse(a, b, sip.NewResponseFromRequest(req, sip.StatusRequestTimeout, "Request Timeout", nil), nil, req)
}

// relayBranch passes a client transaction's responses to the proxy loop
// until its final response or its end.
func relayBranch(b *branch, events chan<- branchEvent) {
	for {
		select {
		case res := <-b.tx.Responses():
			events <- branchEvent{b: b, res: res}
			if !res.IsProvisional() {
				return
			}
		case <-b.tx.Done():
			// A final response may be queued beside Done.
			select {
			case res := <-b.tx.Responses():
				events <- branchEvent{b: b, res: res}
				if !res.IsProvisional() {
					return
				}
			default:
			}
			events <- branchEvent{b: b, err: b.tx.Err()}
			return
		}
	}
}

// startBranch builds the copy of req for target t and starts its client
// transaction.
func (p *Proxy) startBranch(req *sip.Request, in *listener, t target, branchID string, a *anchor) (*branch, error) {
	out, err := p.outbound(t.transport, t.dst, t.prefer)
	if err != nil {
		return nil, err
	}
	if t.reuseOnly {
		c, err := p.tp.GetConnection("tcp", t.dst.String())
		if err != nil || c == nil {
			return nil, errNoConnection
		}
		c.TryClose() // GetConnection took a reference
	}
	r := req.Clone()
	r.Recipient = t.ruri
	p.fillReceived(r, req.Source())
	if mf := r.MaxForwards(); mf != nil {
		mf.Dec()
	} else {
		m := sip.MaxForwardsHeader(70)
		r.AppendHeader(&m)
	}
	if recordRoutes(r.Method) && in != nil { // in is nil for requests of our own
		rr := &sip.RecordRouteHeader{Address: in.rrURI()}
		r.PrependHeader(rr)
		if out != in {
			// Crossing transports or interfaces: each side must see the
			// address it can reach (RFC 5658 double Record-Route).
			r.PrependHeader(&sip.RecordRouteHeader{Address: out.rrURI()})
		}
	}
	if c := r.Contact(); c != nil && r.Method != sip.REGISTER {
		addAlias(r, req.Source(), strings.ToLower(req.Transport()))
	}
	a.translate(r)
	p.addVia(r, out, t, branchID)
	if err := a.offerBranch(r, branchID, out, t); err != nil {
		return nil, fmt.Errorf("%w: %w", errRelay, err)
	}
	tx, err := p.cli.TransactionRequest(context.Background(), r, prebuilt)
	if err != nil {
		return nil, err
	}
	if r.IsInvite() {
		// A 2xx resent before the transaction ends (its ACK is late) is
		// not passed on by sipgo: relay it as one after the end is.
		tx.OnRetransmission(p.strayResponse)
	}
	return &branch{t: t, req: r, tx: tx, out: out}, nil
}

// prebuilt tells sipgo the request is complete: add nothing.
func prebuilt(*sipgo.Client, *sip.Request) error { return nil }

// addVia puts our Via on top and aims the request at t from listener out.
func (p *Proxy) addVia(r *sip.Request, out *listener, t target, branchID string) {
	via := &sip.ViaHeader{
		ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: out.network(),
		Host: out.host, Port: out.port, Params: sip.NewParams(),
	}
	via.Params.Add("branch", branchID)
	via.Params.Add("rport", "")
	r.PrependHeader(via)
	aim(r, out, t.dst)
}

// aim sends r to dst from listener out.
func aim(r *sip.Request, out *listener, dst netip.AddrPort) {
	r.SetTransport(out.network())
	r.SetDestination(dst.String())
	if out.transport == "udp" {
		r.Laddr = out.laddr()
	} else {
		r.Laddr = sip.Addr{}
	}
}

// fillReceived adds received and rport to the upstream Via (RFC 3261
// §18.2.1, RFC 3581 §4), so that responses find their way back through NAT.
func (p *Proxy) fillReceived(r *sip.Request, src string) {
	v := r.Via()
	if v == nil {
		return
	}
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		return
	}
	if v.Params == nil {
		v.Params = sip.NewParams()
	}
	host := ap.Addr().Unmap().String()
	if v.Host != host || v.Params.Has("rport") {
		v.Params.Add("received", host)
	}
	if v.Params.Has("rport") {
		v.Params.Add("rport", strconv.Itoa(int(ap.Port())))
	}
}

// recordRoutes: methods that create dialogs or run inside one we stay in.
func recordRoutes(m sip.RequestMethod) bool {
	switch m {
	case sip.INVITE, sip.SUBSCRIBE, sip.REFER, sip.NOTIFY:
		return true
	}
	return false
}

// stopBranch CANCELs a pending INVITE branch (RFC 3261 §9.1: only after a
// provisional response; before that, as soon as one arrives).
func (p *Proxy) stopBranch(b *branch, log *slog.Logger) {
	if b.done || b.stopped {
		return
	}
	if !b.req.IsInvite() {
		return // only INVITEs are cancelled (RFC 3261 §9.1); the others run out
	}
	if !b.ringing {
		b.wantStop = true
		return
	}
	b.stopped = true
	p.sendCancel(cancelFor(b.req), log)
}

// sendCancel sends a CANCEL in a transaction of its own, whose response
// is not waited for.
func (p *Proxy) sendCancel(c *sip.Request, log *slog.Logger) {
	tx, err := p.cli.TransactionRequest(context.Background(), c, prebuilt)
	if err != nil {
		log.Info("CANCEL not sent", "target", c.Destination(), "err", err)
		return
	}
	go func() {
		defer tx.Terminate()
		select {
		case <-tx.Responses():
		case <-tx.Done():
		case <-time.After(32 * time.Second):
		}
	}()
}

// cancelFor builds the CANCEL of a forwarded INVITE (RFC 3261 §9.1): same
// Request-URI, top Via, Route, Call-ID, From, To and CSeq number.
func cancelFor(inv *sip.Request) *sip.Request {
	c := hopByHop(sip.CANCEL, inv.Recipient, inv.Via(), inv.GetHeaders("Route"), inv)
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())
	c.Laddr = inv.Laddr
	return c
}

// hopByHop builds a request that goes one hop only: a CANCEL, or the ACK
// of a final response ≥ 300 (RFC 3261 §9.1, §17.1.1.3). It has the one
// Via and the Route set given, and m's From, To, Call-ID and CSeq number.
func hopByHop(method sip.RequestMethod, ruri sip.Uri, via *sip.ViaHeader, routes []sip.Header, m sip.Message) *sip.Request {
	r := sip.NewRequest(method, *ruri.Clone())
	r.AppendHeader(via.Clone())
	for _, rt := range routes {
		r.AppendHeader(sip.HeaderClone(rt))
	}
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.AppendHeader(sip.HeaderClone(m.From()))
	r.AppendHeader(sip.HeaderClone(m.To()))
	r.AppendHeader(sip.HeaderClone(m.CallID()))
	r.AppendHeader(&sip.CSeqHeader{SeqNo: m.CSeq().SeqNo, MethodName: method})
	r.SetBody(nil)
	return r
}

// forwardStateless relays a request that has no transaction of its own:
// the ACK of a 2xx (RFC 3261 §16.11 for stateless forwarding). The ACK of
// a final response ≥ 300 whose transaction is gone is absorbed instead.
func (p *Proxy) forwardStateless(req *sip.Request) {
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return
	}
	if p.finalACK(req) {
		p.log.Debug("ACK of a final response without its transaction absorbed", "call_id", callID(req), "peer", req.Source())
		return
	}
	p.ackHook(req)
	lh := p.loopHash(req)
	if p.looped(req, lh) {
		return
	}
	p.consumeRoutes(req)
	ts, status, _ := p.targets(req)
	if status != 0 || len(ts) == 0 {
		p.log.Debug("ACK not forwarded", "call_id", callID(req), "status", status)
		return
	}
	if p.peerOf(req) == "" && p.leaves(req, ts) {
		p.log.Debug("ACK not forwarded: relaying denied", "call_id", callID(req), "peer", req.Source())
		return
	}
	t := ts[0]
	out, err := p.outbound(t.transport, t.dst, t.prefer)
	if err != nil {
		p.log.Info("ACK not forwarded", "call_id", callID(req), "err", err)
		return
	}
	r := req.Clone()
	r.Recipient = t.ruri
	p.fillReceived(r, req.Source())
	if mf := r.MaxForwards(); mf != nil {
		mf.Dec()
	}
	// A stateless proxy's branch must be the same for retransmissions.
	topBranch, _ := req.Via().Params.Get("branch")
	p.addVia(r, out, t, branchPrefix+lh+"."+shortHash(topBranch))
	if err := p.cli.WriteRequest(r, prebuilt); err != nil {
		p.log.Info("ACK not forwarded", "call_id", callID(req), "target", t.String(), "err", err)
	}
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:5])
}
