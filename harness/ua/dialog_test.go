package ua

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// inDialog is a request from the raw caller inside the dialog of res.
func (p *rawPeer) inDialog(inv *sip.Request, res *sip.Response, method sip.RequestMethod, seq uint32, body []byte) *sip.Request {
	req := sameTx(inv, method, res.To())
	req.Recipient = res.Contact().Address
	req.Via().Params.Add("branch", "z9hG4bK-"+string(method)+newID())
	req.CSeq().SeqNo = seq
	if body != nil {
		withSDP(req, body)
	}
	return req
}

// TestInDialogRequests: inside an answered call the UA answers OPTIONS and
// NOTIFY with 200, an UPDATE with a new address with an SDP answer (its
// RTP follows), a request for another dialog with 481, and a BYE with 200,
// which ends the call by the remote side.
func TestInDialogRequests(t *testing.T) {
	caller := newRawPeer(t, "127.0.68.1")
	u := newUA(t, Config{Local: netip.MustParseAddr("127.0.68.2"), Server: caller.addr()})
	inv := caller.invite(t, u.Addr(), answerSDP(t, netip.MustParseAddrPort("127.0.68.1:4000")))
	caller.send(inv, u.Addr())
	ok := caller.response(t, 200)
	caller.send(caller.ack(inv, ok), u.Addr())
	c, err := u.Incoming(ctxFor(t, 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range []sip.RequestMethod{sip.OPTIONS, sip.NOTIFY} {
		caller.send(caller.inDialog(inv, ok, m, uint32(2+i), nil), u.Addr())
		caller.response(t, 200)
	}
	moved := newRawPeer(t, "127.0.68.3")
	caller.send(caller.inDialog(inv, ok, sip.UPDATE, 4, answerSDP(t, moved.addr())), u.Addr())
	res := caller.response(t, 200)
	if _, err := parseSDP(res.Body()); err != nil || c.RemoteMedia() != moved.addr() {
		t.Fatalf("UPDATE answered %q (%v); remote media %v, want %v", res.Body(), err, c.RemoteMedia(), moved.addr())
	}
	if err := c.StartMedia(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, src, ok := moved.readRaw(2 * time.Second); !ok || src != c.LocalMedia() {
		t.Fatalf("RTP at the UPDATE's address: %v from %v, want from %v", ok, src, c.LocalMedia())
	}
	stray := caller.inDialog(inv, ok, sip.BYE, 5, nil)
	id := sip.CallIDHeader("unknown-" + newID())
	stray.ReplaceHeader(&id)
	caller.send(stray, u.Addr())
	caller.response(t, 481)
	caller.send(caller.inDialog(inv, ok, sip.BYE, 6, nil), u.Addr())
	caller.response(t, 200)
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("BYE did not end the call")
	}
	if c.EndedBy() != "remote" || c.State() != StateEnded {
		t.Errorf("ended by %q in state %v, want remote, ended", c.EndedBy(), c.State())
	}
}

// TestUnregister: Unregister sends REGISTER with Expires: 0 on the
// registration's Call-ID, with a higher CSeq.
func TestUnregister(t *testing.T) {
	reg := newRawPeer(t, "127.0.68.4")
	u := newUA(t, Config{Local: netip.MustParseAddr("127.0.68.5"), Server: reg.addr()})
	var first *sip.Request
	for _, f := range []func(context.Context) error{
		func(ctx context.Context) error { _, err := u.Register(ctx, time.Minute); return err },
		u.Unregister,
	} {
		done := make(chan error, 1)
		go func() { done <- f(context.Background()) }()
		req, text := reg.request(sip.REGISTER, 2*time.Second)
		reg.reply(req, 200, nil)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = req
			continue
		}
		if req.GetHeader("Expires").Value() != "0" || req.CallID().Value() != first.CallID().Value() ||
			req.CSeq().SeqNo <= first.CSeq().SeqNo {
			t.Errorf("unregister:\n%s", text)
		}
	}
}

// TestInviteProxyAuth: a 407 to the INVITE is ACKed and the INVITE sent
// again with Proxy-Authorization and the next CSeq.
func TestInviteProxyAuth(t *testing.T) {
	proxy := newRawPeer(t, "127.0.68.6")
	u := newUA(t, Config{Local: netip.MustParseAddr("127.0.68.7"), Server: proxy.addr(), Password: "secret"})
	done := make(chan error, 1)
	go func() { _, err := u.Call(ctxFor(t, 5*time.Second), "bob"); done <- err }()
	inv, _ := proxy.request(sip.INVITE, 2*time.Second)
	res := sip.NewResponseFromRequest(inv, 407, "Proxy Authentication Required", nil)
	res.To().Params.Add("tag", "proxy")
	res.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="example.test", nonce="abc", qop="auth"`))
	src, _ := netip.ParseAddrPort(inv.Source())
	proxy.send(res, src)
	ack, _ := proxy.request(sip.ACK, 2*time.Second)
	again, text := proxy.request(sip.INVITE, 2*time.Second)
	auth := again.GetHeader("Proxy-Authorization")
	if branchOf(ack) != branchOf(inv) || auth == nil || !strings.Contains(auth.Value(), `username="alice"`) ||
		again.CSeq().SeqNo != inv.CSeq().SeqNo+1 || branchOf(again) == branchOf(inv) {
		t.Fatalf("after the 407:\n%s", text)
	}
	proxy.reply(again, 200, answerSDP(t, netip.MustParseAddrPort("127.0.68.6:4000")))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
