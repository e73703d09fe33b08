package sip

import (
	"strings"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// maxHeldAnswers bounds the server transactions kept for final answers
// sipanchor makes itself to out-of-dialog requests (404 for nobody, 401
// and 407 challenges, 403, 503 over a limit). sipgo keeps each one, with
// its request and answer, for 64×T1 (32 s): for an INVITE to retransmit
// the answer until the ACK (RFC 3261 §17.2.1), for any other request to
// absorb its retransmissions (§17.2.2). A flood of such requests would
// keep 32 s of them: about 8 KB each, a gigabyte at 4,000 a second. Up to
// this many are kept as the RFC says, which normal traffic stays well
// under (at 400 new calls a second, challenged and ACKed within T4, about
// 2,000); past it an answer is sent as if statelessly, as Kamailio's
// sl_send_reply always does: its transaction ends at once, a
// retransmitted request is answered anew, and the ACK of an INVITE's
// answer is absorbed by its To tag (localTag).
const maxHeldAnswers = 4096

// heldAnswers counts the kept transactions of local answers.
type heldAnswers struct {
	max       int64
	n         atomic.Int64
	stateless atomic.Uint64 // answers whose transaction was ended at once
	tag       string        // prefix of the To tag of local answers
}

func newHeldAnswers(max int64) *heldAnswers {
	return &heldAnswers{max: max, tag: "sa" + randHex(4) + "."}
}

// localAnswer reports whether res is a final answer of ours whose
// transaction is bounded: to an out-of-dialog request, and for an INVITE
// not a 2xx (whose transaction guards the call's setup).
func localAnswer(req *sip.Request, res *sip.Response) bool {
	if res.StatusCode < 200 || inDialog(req) || req.Method == sip.ACK {
		return false
	}
	return !req.IsInvite() || res.StatusCode >= 300
}

// label gives res, a local answer to req, a To tag this proxy knows again:
// the same for every answer to the same request.
func (h *heldAnswers) label(req *sip.Request, res *sip.Response) {
	to := res.To()
	if to == nil {
		return
	}
	fromTag, _ := req.From().Params.Get("tag")
	branch := ""
	if v := req.Via(); v != nil {
		branch, _ = v.Params.Get("branch")
	}
	to.Params.Add("tag", h.tag+shortHash(callID(req)+"|"+fromTag+"|"+branch))
}

// ours reports whether an ACK acknowledges a local answer.
func (h *heldAnswers) ours(ack *sip.Request) bool {
	tag, _ := ack.To().Params.Get("tag")
	return strings.HasPrefix(tag, h.tag)
}

// keep is called once tx has sent a local answer: the transaction is kept
// while fewer than max are, else it ends now.
func (h *heldAnswers) keep(tx sip.ServerTransaction) {
	st, ok := tx.(*sip.ServerTx)
	if !ok {
		return
	}
	if h.n.Add(1) > h.max {
		h.n.Add(-1)
		h.stateless.Add(1)
		st.Terminate()
		return
	}
	if !st.OnTerminate(func(string, error) { h.n.Add(-1) }) {
		h.n.Add(-1) // it ended already (a transport error)
	}
}

// HeldAnswers is how many transactions of local answers are kept now, and
// how many answers had theirs ended at once, over maxHeldAnswers.
func (p *Proxy) HeldAnswers() (held int64, stateless uint64) {
	return p.held.n.Load(), p.held.stateless.Load()
}
