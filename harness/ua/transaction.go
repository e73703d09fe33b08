package ua

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// clientTx is a client transaction (RFC 3261 section 17.1): its request is
// retransmitted over UDP (Timer A for INVITE, E otherwise) until a response
// says stop; responses reach its owner through resps.
type clientTx struct {
	key    string
	raw    []byte
	invite bool
	start  time.Time
	state  atomic.Int32 // txCalling, txProceeding, txCompleted
	resps  chan *sip.Response
	stop   chan struct{}
}

const (
	txCalling int32 = iota
	txProceeding
	txCompleted
)

func txKey(branch string, method sip.RequestMethod) string { return branch + " " + string(method) }

func branchOf(m interface{ Via() *sip.ViaHeader }) string {
	if v := m.Via(); v != nil {
		return v.Params.GetOr("branch", "")
	}
	return ""
}

// startTx sends req to Server as a new client transaction.
func (u *UA) startTx(req *sip.Request) (*clientTx, error) {
	tx := &clientTx{
		key: txKey(branchOf(req), req.Method), raw: []byte(req.String()),
		invite: req.Method == sip.INVITE, start: time.Now(),
		resps: make(chan *sip.Response, 16), stop: make(chan struct{}),
	}
	u.mu.Lock()
	if u.isClosed {
		u.mu.Unlock()
		return nil, ErrClosed
	}
	u.clients[tx.key] = tx
	u.mu.Unlock()
	if err := u.conn.send(tx.raw, u.cfg.Server); err != nil {
		u.endTx(tx)
		return nil, err
	}
	if !u.conn.reliable() {
		u.goes(func() { u.retransmit(tx) })
	}
	return tx, nil
}

// endTx forgets tx and stops its retransmissions.
func (u *UA) endTx(tx *clientTx) {
	u.mu.Lock()
	if u.clients[tx.key] == tx {
		delete(u.clients, tx.key)
		close(tx.stop)
	}
	u.mu.Unlock()
}

// retransmit resends tx's request at T1, 2*T1, ... (capped at T2 for a
// non-INVITE) until a response stops it or 64*T1 has passed.
func (u *UA) retransmit(tx *clientTx) {
	interval := t1
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-tx.stop:
			return
		case <-u.closed:
			return
		case <-timer.C:
		}
		st := tx.state.Load()
		if st == txCompleted || (tx.invite && st == txProceeding) || time.Since(tx.start) >= txTimeout {
			return
		}
		_ = u.conn.send(tx.raw, u.cfg.Server)
		interval *= 2
		if !tx.invite && (interval > t2 || st == txProceeding) {
			interval = t2
		}
		timer.Reset(interval)
	}
}

// next waits for tx's next response. Before any provisional response it
// gives up at 64*T1 (Timers B and F) with ErrTimeout.
func (u *UA) next(ctx context.Context, tx *clientTx) (*sip.Response, error) {
	var deadline <-chan time.Time
	if tx.state.Load() == txCalling || !tx.invite {
		t := time.NewTimer(time.Until(tx.start.Add(txTimeout)))
		defer t.Stop()
		deadline = t.C
	}
	select {
	case r := <-tx.resps:
		return r, nil
	case <-deadline:
		return nil, ErrTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-u.closed:
		return nil, ErrClosed
	}
}

// final waits for tx's final response, passing provisional ones to prov
// (may be nil).
func (u *UA) final(ctx context.Context, tx *clientTx, prov func(*sip.Response)) (*sip.Response, error) {
	for {
		r, err := u.next(ctx, tx)
		if err != nil {
			return nil, err
		}
		if r.StatusCode >= 200 {
			return r, nil
		}
		if prov != nil {
			prov(r)
		}
	}
}

// do runs one non-INVITE transaction to its final response.
func (u *UA) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	tx, err := u.startTx(req)
	if err != nil {
		return nil, err
	}
	defer u.endTx(tx)
	return u.final(ctx, tx, nil)
}

// onResponse hands a response to its client transaction; a final response
// to an INVITE that has none left (a retransmission) gets its ACK again.
func (u *UA) onResponse(r *sip.Response) {
	cseq := r.CSeq()
	if cseq == nil {
		return
	}
	u.mu.Lock()
	tx := u.clients[txKey(branchOf(r), cseq.MethodName)]
	var ack []byte
	if tx == nil && cseq.MethodName == sip.INVITE && r.StatusCode >= 200 && r.CallID() != nil {
		ack, _ = u.sentACKs.get(ackKey(r.CallID().Value(), cseq.SeqNo))
	}
	u.mu.Unlock()
	if ack != nil {
		_ = u.conn.send(ack, u.cfg.Server)
		return
	}
	if tx == nil {
		return
	}
	st := txProceeding
	if r.StatusCode >= 200 {
		st = txCompleted
	}
	if tx.state.Load() < st {
		tx.state.Store(st)
	}
	select {
	case tx.resps <- r:
	default: // the owner stopped listening; retransmissions are dropped
	}
}

func ackKey(callID string, seq uint32) string {
	return callID + " " + strconv.FormatUint(uint64(seq), 10)
}

// sendACK sends an ACK and keeps it to answer retransmissions of the final
// response it acknowledges.
func (u *UA) sendACK(ack *sip.Request) {
	b := []byte(ack.String())
	u.mu.Lock()
	u.sentACKs.put(ackKey(ack.CallID().Value(), ack.CSeq().SeqNo), b)
	u.mu.Unlock()
	_ = u.conn.send(b, u.cfg.Server)
}

// absorb reports whether req is a retransmission of a request already
// seen (same branch and method, RFC 3261 section 17.2.3), and if so resends
// the last response to it, if any. A new request is remembered.
func (u *UA) absorb(req *sip.Request, src netip.AddrPort) bool {
	if req.Method == sip.ACK {
		return false
	}
	k := serverKey(req)
	u.mu.Lock()
	last, seen := u.served.get(k)
	if !seen {
		u.served.put(k, nil)
	}
	u.mu.Unlock()
	if seen && last != nil {
		_ = u.conn.send(last, src)
	}
	return seen
}

// serverKey names a request's server transaction: its branch and method
// (RFC 3261 section 17.2.3), or for an RFC 2543 branch (no magic cookie)
// its Call-ID, From tag, CSeq and method.
func serverKey(req *sip.Request) string {
	b := branchOf(req)
	if strings.HasPrefix(b, sip.RFC3261BranchMagicCookie) {
		return txKey(b, req.Method)
	}
	return txKey(req.CallID().Value()+" "+tagOf(req.From().Params)+" "+req.CSeq().Value(), req.Method)
}

// respond sends res to where req came from and keeps it for
// retransmissions of req.
func (u *UA) respond(req *sip.Request, res *sip.Response) []byte {
	b := []byte(res.String())
	u.mu.Lock()
	u.served.put(serverKey(req), b)
	u.mu.Unlock()
	src, _ := netip.ParseAddrPort(req.Source())
	_ = u.conn.send(b, src)
	return b
}

// reply builds and sends a response without a body.
func (u *UA) reply(req *sip.Request, code int, reason string) {
	u.respond(req, sip.NewResponseFromRequest(req, code, reason, nil))
}

// respondUntilACK sends a final response to an INVITE and, over UDP,
// retransmits it (Timer G: T1 doubling to T2) until its ACK comes or
// 64*T1 has passed (Timer H); then it calls timeout (if not nil).
func (u *UA) respondUntilACK(req *sip.Request, res *sip.Response, timeout func()) {
	if u.conn.reliable() {
		u.respond(req, res)
		return
	}
	key := ackKey(req.CallID().Value(), req.CSeq().SeqNo)
	acked := make(chan struct{})
	u.mu.Lock()
	u.awaitACK[key] = acked
	u.mu.Unlock()
	b := u.respond(req, res)
	src, _ := netip.ParseAddrPort(req.Source())
	ok := u.goes(func() {
		defer u.ackDone(key, acked)
		start, interval := time.Now(), t1
		timer := time.NewTimer(interval)
		defer timer.Stop()
		for {
			select {
			case <-acked:
				return
			case <-u.closed:
				return
			case <-timer.C:
			}
			if time.Since(start) >= txTimeout {
				if timeout != nil {
					timeout()
				}
				return
			}
			_ = u.conn.send(b, src)
			interval = min(2*interval, t2)
			timer.Reset(interval)
		}
	})
	if !ok {
		u.ackDone(key, acked)
	}
}

// ackDone forgets an ACK that is no longer awaited.
func (u *UA) ackDone(key string, ch chan struct{}) {
	u.mu.Lock()
	if u.awaitACK[key] == ch {
		delete(u.awaitACK, key)
	}
	u.mu.Unlock()
}

// gotACK stops the retransmissions of the final response an ACK answers.
func (u *UA) gotACK(ack *sip.Request) {
	key := ackKey(ack.CallID().Value(), ack.CSeq().SeqNo)
	u.mu.Lock()
	ch := u.awaitACK[key]
	delete(u.awaitACK, key)
	u.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}
