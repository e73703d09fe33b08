package sip

import (
	"context"
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
// and the 2xx retransmissions a client transaction passes on (RFC 6026).
// Only a 2xx to an INVITE is relayed (statelessly, if the top Via is ours):
// those are the callee's retransmissions after the INVITE transaction
// ended, and the caller needs them until it ACKs (RFC 6026). Anything else
// is late: sipgo runs each message on its own goroutine, so a 180 can
// arrive after the 200 that ended its transaction, and relaying it would
// put a 180 after the 200 at the caller.
func (p *Proxy) strayResponse(res *sip.Response) {
	if !strayRelayable(res) {
		p.log.Debug("late response dropped", "call_id", callID(res), "status", res.StatusCode)
		return
	}
	v := res.Via()
	b, _ := v.Params.Get("branch")
	if !strings.HasPrefix(b, branchPrefix) || !p.isUs(sip.Uri{Host: v.Host, Port: v.Port}) {
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

// strayRelayable: a 2xx to an INVITE, with a Via to follow back.
func strayRelayable(res *sip.Response) bool {
	return res.IsSuccess() && res.CSeq() != nil && res.CSeq().MethodName == sip.INVITE &&
		res.Via() != nil && res.Via().Params != nil
}

// anchorStray gives a 2xx that matches no transaction to its dialog: the
// INVITE (initial or re-INVITE) was forwarded before a restart, and the
// dialog was restored with its relay sessions and the exchange in flight;
// or the 2xx is a copy of one relayed already. The 2xx is then answered
// by the relay like any other (up's SDP rewritten); an initial one
// confirms the dialog.
func (p *Proxy) anchorStray(res, up *sip.Response) {
	if p.dialogs == nil {
		return
	}
	fromTag, _ := res.From().Params.Get("tag")
	toTag, _ := res.To().Params.Get("tag")
	d, _, ok := p.dialogs.Find(callID(res), fromTag, toTag)
	if !ok {
		return
	}
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
	toTag, _ := res.To().Params.Get("tag")
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
