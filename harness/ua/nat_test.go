package ua

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
)

// TestOnlyFrom: a UA that only the NAT box's view prefix may reach
// answers an OPTIONS from inside the prefix and drops the same from
// another source, and counts RTP only from inside the prefix.
func TestOnlyFrom(t *testing.T) {
	view := newRawPeer(t, "127.77.0.9")
	stranger := newRawPeer(t, "127.0.63.9")
	u := newUA(t, Config{Local: netip.MustParseAddr("127.0.63.1"), Server: view.addr(),
		OnlyFrom: netip.MustParsePrefix("127.77.0.0/16")})

	stranger.send(stranger.options(u.Addr(), "z9hG4bK-stranger"), u.Addr())
	if b, _, ok := stranger.readRaw(500 * time.Millisecond); ok {
		t.Fatalf("a stranger got an answer: %q", b)
	}
	view.send(view.options(u.Addr(), "z9hG4bK-view"), u.Addr())
	if m, text, _ := view.read(2 * time.Second); m.(*sip.Response).StatusCode != 200 {
		t.Fatalf("the view address got %q, want 200", text)
	}

	ctx := ctxFor(t, 10*time.Second)
	type result struct {
		c   *Call
		err error
	}
	done := make(chan result, 1)
	go func() { c, err := u.Call(ctx, "bob"); done <- result{c, err} }()
	inv, _ := view.request(sip.INVITE, 2*time.Second)
	viewRTP := newRawPeer(t, "127.77.0.9")
	view.reply(inv, 200, answerSDP(t, viewRTP.addr()))
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	strangerRTP := newRawPeer(t, "127.0.63.9")
	pkt := func(ssrc uint32) []byte {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: ssrc}, Payload: []byte{0xff}}).Marshal()
		return b
	}
	for range 3 {
		strangerRTP.c.WriteToUDPAddrPort(pkt(1), r.c.LocalMedia())
	}
	viewRTP.c.WriteToUDPAddrPort(pkt(2), r.c.LocalMedia())
	eventually(t, 2*time.Second, func() bool { return r.c.Received().Packets > 0 }, "RTP from the view address counted")
	if st := r.c.Received(); st.Packets != 1 || st.Sources[viewRTP.addr()] != 1 {
		t.Errorf("received %+v, want the view's one packet only", st)
	}
}

// TestViaRport: the Via of a REGISTER has ;rport, and the UA reports the
// received/rport of the 200; with Faults.NoRport it has none.
func TestViaRport(t *testing.T) {
	for _, noRport := range []bool{false, true} {
		reg := newRawPeer(t, "127.0.63.2")
		u := newUA(t, Config{Local: netip.MustParseAddr("127.0.63.3"), Server: reg.addr(), Faults: Faults{NoRport: noRport}})
		type result struct {
			r   *Registration
			err error
		}
		done := make(chan result, 1)
		go func() { r, err := u.Register(context.Background(), time.Minute); done <- result{r, err} }()
		req, text := reg.request(sip.REGISTER, 2*time.Second)
		via := req.Via().Value()
		if strings.Contains(via, "rport") == noRport {
			t.Errorf("NoRport=%v: Via %q", noRport, via)
		}
		reg.reply(req, 200, nil)
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		want := Registration{Expires: time.Minute}
		if !noRport {
			want.Received, want.RPort = u.Addr().Addr(), int(u.Addr().Port())
		}
		if *r.r != want {
			t.Errorf("NoRport=%v: registration %+v, want %+v\n%s", noRport, *r.r, want, text)
		}
	}
}

// TestKeepAlive: KeepAlive sends double CRLFs to the server; with
// Faults.NoKeepalive nothing.
func TestKeepAlive(t *testing.T) {
	for _, off := range []bool{false, true} {
		srv := newRawPeer(t, "127.0.63.4")
		u := newUA(t, Config{Local: netip.MustParseAddr("127.0.63.5"), Server: srv.addr(), Faults: Faults{NoKeepalive: off}})
		u.KeepAlive(50 * time.Millisecond)
		for i := range 2 {
			b, src, ok := srv.readRaw(time.Second)
			if off {
				if ok {
					t.Fatalf("NoKeepalive: got %q", b)
				}
				break
			}
			if !ok || string(b) != "\r\n\r\n" || src != u.Addr() {
				t.Fatalf("keepalive %d: %q from %v (ok %v), want CRLFCRLF from %v", i, b, src, ok, u.Addr())
			}
		}
	}
}
