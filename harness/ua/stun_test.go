package ua

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// natForwarder is the smallest NAT a STUN test needs: what the inside
// sends to its view socket leaves from its public socket towards to, and
// answers come back to the last inside sender.
func natForwarder(t *testing.T, viewIP, publicIP string, to netip.AddrPort) (view, public netip.AddrPort) {
	t.Helper()
	v, p := newRawPeer(t, viewIP), newRawPeer(t, publicIP)
	inside := make(chan netip.AddrPort, 1)
	go func() { // ends when the test closes the sockets
		buf := make([]byte, 1500)
		for {
			n, src, err := v.c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case inside <- src:
			default:
			}
			p.c.WriteToUDPAddrPort(buf[:n], to)
		}
	}()
	go func() {
		var last netip.AddrPort
		buf := make([]byte, 1500)
		for {
			n, _, err := p.c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case last = <-inside:
			default:
			}
			v.c.WriteToUDPAddrPort(buf[:n], last)
		}
	}()
	return v.addr(), p.addr()
}

// TestSTUN: a UA with STUN set learns its RTP socket's public mapping
// (here, a forwarder's public socket) from a STUNServer and writes it in
// the c= and m= lines of its offer.
func TestSTUN(t *testing.T) {
	srv, err := NewSTUNServer(netip.MustParseAddrPort("127.0.66.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	view, public := natForwarder(t, "127.0.66.2", "127.0.66.3", srv.Addr())
	peer := newRawPeer(t, "127.0.66.4")
	u := newUA(t, Config{Local: netip.MustParseAddr("127.0.66.5"), Server: peer.addr(), STUN: view})
	go u.Call(ctxFor(t, 5*time.Second), "bob")
	inv, text := peer.request(sip.INVITE, 5*time.Second)
	r, err := parseSDP(inv.Body())
	if err != nil {
		t.Fatal(err)
	}
	if r.addr != public {
		t.Errorf("offer names %v, want the STUN mapping %v:\n%s", r.addr, public, text)
	}
	if !strings.Contains(text, "c=IN IP4 "+public.Addr().String()) || !strings.Contains(text, "m=audio "+strconv.Itoa(int(public.Port()))) {
		t.Errorf("offer:\n%s", text)
	}
}

// TestSTUNServer: the server answers a Binding request with the
// request's source.
func TestSTUNServer(t *testing.T) {
	srv, err := NewSTUNServer(netip.MustParseAddrPort("127.0.66.6:0"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.66.7:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := stunMapping(ctxFor(t, 5*time.Second), c, srv.Addr(), netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if want := unmap(c.LocalAddr().(*net.UDPAddr).AddrPort()); got != want {
		t.Errorf("mapping %v, want %v", got, want)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}
