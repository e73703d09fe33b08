package ua

import (
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestInviteRetransmitted: over UDP an unanswered INVITE is sent again
// after T1 (500 ms) with the same branch (RFC 3261 Timer A); once the
// 200 comes the UA ACKs it, and ACKs it again when the 200 is
// retransmitted.
func TestInviteRetransmitted(t *testing.T) {
	srv := newRawPeer(t, "127.0.67.1")
	u := newUA(t, Config{Local: netip.MustParseAddr("127.0.67.2"), Server: srv.addr()})
	done := make(chan error, 1)
	go func() { _, err := u.Call(ctxFor(t, 10*time.Second), "bob"); done <- err }()
	first, _ := srv.request(sip.INVITE, 2*time.Second)
	start := time.Now()
	again, _ := srv.request(sip.INVITE, 2*time.Second)
	if gap := time.Since(start); gap < 250*time.Millisecond || branchOf(again) != branchOf(first) {
		t.Fatalf("retransmission after %v with branch %q, want ~500ms and %q", gap, branchOf(again), branchOf(first))
	}
	ok := srv.reply(again, 200, answerSDP(t, netip.MustParseAddrPort("127.0.67.1:4000")))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	srv.request(sip.ACK, 2*time.Second)
	src, _ := netip.ParseAddrPort(again.Source())
	srv.send(ok, src)
	srv.request(sip.ACK, 2*time.Second)
}

// TestRetransmissionAbsorbed: a retransmitted INVITE gets the same 200
// again (same To tag), not a second call; the 200 is retransmitted until
// the ACK comes (Timer G), and not after.
func TestRetransmissionAbsorbed(t *testing.T) {
	caller := newRawPeer(t, "127.0.67.3")
	u := newUA(t, Config{Local: netip.MustParseAddr("127.0.67.4"), Server: caller.addr()})
	inv := caller.invite(t, u.Addr(), answerSDP(t, netip.MustParseAddrPort("127.0.67.3:4000")))
	caller.send(inv, u.Addr())
	res1 := caller.response(t, 200)
	start := time.Now()
	caller.send(inv, u.Addr())
	res2 := caller.response(t, 200)
	if tagOf(res1.To().Params) != tagOf(res2.To().Params) {
		t.Errorf("To tags %q and %q: the retransmission was taken as a new call", res1.To().Value(), res2.To().Value())
	}
	caller.response(t, 200) // Timer G
	if gap := time.Since(start); gap < 250*time.Millisecond {
		t.Errorf("200 retransmitted after %v, want ~T1", gap)
	}
	caller.send(caller.ack(inv, res1), u.Addr())
	if b, _, ok := caller.readRaw(1500 * time.Millisecond); ok {
		t.Errorf("after the ACK: %q", b)
	}
	c, err := u.Incoming(ctxFor(t, time.Second))
	if err != nil || c.CallID() != inv.CallID().Value() {
		t.Fatalf("incoming: %v, %v", c, err)
	}
	if extra, err := u.Incoming(ctxFor(t, 100*time.Millisecond)); err == nil {
		t.Errorf("a second call %s", extra.CallID())
	}
}

// TestCloseReleasesGoroutines: after calls with media, keepalives and a
// retransmitting transaction, Close leaves no goroutine behind, and the
// unanswered call returns an error.
func TestCloseReleasesGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := newRawPeer(t, "127.0.67.5")
	u, err := New(Config{User: "alice", Domain: "example.test", Local: netip.MustParseAddr("127.0.67.6"), Server: srv.addr()})
	if err != nil {
		t.Fatal(err)
	}
	u.KeepAlive(10 * time.Millisecond)
	called := make(chan error, 1)
	go func() { _, err := u.Call(ctxFor(t, time.Minute), "bob"); called <- err }() // never answered: retransmits
	srv.request(sip.INVITE, 2*time.Second)
	inv := srv.invite(t, u.Addr(), answerSDP(t, srv.addr()))
	srv.send(inv, u.Addr())
	c, err := u.Incoming(ctxFor(t, 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartMedia(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-called; err == nil {
		t.Error("Close: the unanswered Call returned no error")
	}
	eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before },
		"%v goroutines after Close, %d before", lazy(func() any { return runtime.NumGoroutine() }), before)
	select {
	case <-c.Done():
	default:
		t.Error("Close left the call going")
	}
}

// invite is an initial INVITE from p to the UA at to.
func (p *rawPeer) invite(t *testing.T, to netip.AddrPort, body []byte) *sip.Request {
	t.Helper()
	req := p.options(to, "z9hG4bK-inv"+strconv.FormatInt(time.Now().UnixNano(), 36))
	req.Method = sip.INVITE
	req.CSeq().MethodName = sip.INVITE
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "raw", Host: p.addr().Addr().String(), Port: int(p.addr().Port())}})
	withSDP(req, body)
	return req
}

// ack is the ACK of a 2xx to inv.
func (p *rawPeer) ack(inv *sip.Request, res *sip.Response) *sip.Request {
	ack := sameTx(inv, sip.ACK, res.To())
	ack.Via().Params.Add("branch", "z9hG4bK-ack"+strconv.FormatInt(time.Now().UnixNano(), 36))
	return ack
}

// response reads the next response, which must have code.
func (p *rawPeer) response(t *testing.T, code int) *sip.Response {
	t.Helper()
	m, text, _ := p.read(2 * time.Second)
	res, ok := m.(*sip.Response)
	if !ok || res.StatusCode != code {
		t.Fatalf("got %q, want a %d", text, code)
	}
	return res
}
