package nat

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestSIPInboundRewrittenAndBound: an INVITE from outside reaches the
// inside host with every outside address shown as its view, and the views
// it names (Via, Record-Route, Contact, SDP) already bound: the inside
// host's answer and media, sent at once, get out.
func TestSIPInboundRewrittenAndBound(t *testing.T) {
	n := newTestNet()
	b := newBox(t, n, FullCone.Config())
	proxy := listenUDP(t, n.ip(hostO1), 0)
	proxyVia := listenUDP(t, n.ip(hostO1), 0)
	peer := listenUDP(t, n.ip(hostO2), 0)
	media := listenUDP(t, n.ip(hostO2), 0)
	u := listenUDP(t, n.ip(hostA), 0)

	vProxy := view(t, b, proxy.addr())
	u.send(vProxy, sipMessage("REGISTER sip:"+vProxy.String()+" SIP/2.0", []string{
		"Via: SIP/2.0/UDP " + u.addr().String() + ";branch=z9hG4bKr1",
	}, ""))
	reg := proxy.recv()
	if !strings.HasPrefix(reg.msg, "REGISTER sip:"+proxy.addr().String()+" SIP/2.0\r\n") {
		t.Errorf("the view in the Request-URI was not turned back into the outside address:\n%s", reg.msg)
	}
	if via := header(reg.msg, "Via"); !strings.Contains(via, u.addr().String()) {
		t.Errorf("the inside host's own Via was changed: %s", via)
	}

	public := reg.src
	invite := sipMessage("INVITE sip:alice@"+public.String()+" SIP/2.0", []string{
		"Via: SIP/2.0/UDP " + proxyVia.addr().String() + ";branch=z9hG4bKi1",
		"Record-Route: <sip:" + proxy.addr().String() + ";lr>",
		"Contact: <sip:bob@" + peer.addr().String() + ">",
	}, sdp(media.addr().Addr(), media.addr().Port()))
	proxy.send(public, invite)
	got := u.recv()
	if got.src != vProxy {
		t.Errorf("the INVITE came from %v, want the proxy's view %v", got.src, vProxy)
	}
	vVia, vPeer, vMedia := view(t, b, proxyVia.addr()), view(t, b, peer.addr()), view(t, b, media.addr())
	for _, want := range []string{
		"INVITE sip:alice@" + view(t, b, public).String() + " SIP/2.0\r\n",
		"Via: SIP/2.0/UDP " + vVia.String() + ";",
		"Record-Route: <sip:" + vProxy.String() + ";lr>",
		"Contact: <sip:bob@" + vPeer.String() + ">",
		"c=IN IP4 " + vMedia.Addr().String() + "\r\n",
	} {
		if !strings.Contains(got.msg, want) {
			t.Errorf("the inside host's INVITE lacks %q:\n%s", want, got.msg)
		}
	}
	if _, ok := bodyOf(got.msg); !ok {
		t.Errorf("Content-Length does not match the rewritten body:\n%s", got.msg)
	}
	if s := b.Stats(); s.Rewritten < 2 {
		t.Errorf("Stats().Rewritten = %d, want at least 2", s.Rewritten)
	}

	u.send(vVia, "SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n")
	if d := proxyVia.recv(); d.src.Addr() != b.Public() {
		t.Errorf("the answer to the Via reached it from %v", d.src)
	}
	u.send(vMedia, "rtp")
	if d := media.recv(); d.msg != "rtp" || d.src.Addr() != b.Public() {
		t.Errorf("media to the SDP's view reached it as %q from %v", d.msg, d.src)
	}
}

// TestBrokenALG: the broken ALG puts the public IP where the inside host
// wrote its own, keeps the inside ports and leaves Content-Length as it was.
func TestBrokenALG(t *testing.T) {
	n := newTestNet()
	cfg := typeWith(FullCone, func(c *Config) { c.BrokenALG = true })
	b := newBox(t, n, cfg)
	proxy := listenUDP(t, n.ip(hostO1), 0)
	u := listenUDP(t, n.ip(hostA), 0)
	v := view(t, b, proxy.addr())
	body := sdp(u.addr().Addr(), 4000)
	u.send(v, sipMessage("INVITE sip:bob@"+v.String()+" SIP/2.0", []string{
		"Via: SIP/2.0/UDP " + u.addr().String() + ";branch=z9hG4bKa1",
		"Contact: <sip:alice@" + u.addr().String() + ">",
	}, body))
	got := proxy.recv().msg
	wrong := netip.AddrPortFrom(b.Public(), u.addr().Port()).String()
	for _, want := range []string{
		"INVITE sip:bob@" + proxy.addr().String() + " SIP/2.0\r\n",
		"Via: SIP/2.0/UDP " + wrong + ";",
		"Contact: <sip:alice@" + wrong + ">",
		"c=IN IP4 " + b.Public().String() + "\r\n",
		"m=audio 4000 ",
		fmt.Sprintf("Content-Length: %d\r\n", len(body)),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the ALG's INVITE lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, u.addr().Addr().String()) {
		t.Errorf("the inside IP is still in it:\n%s", got)
	}
	if _, ok := bodyOf(got); ok {
		t.Errorf("Content-Length was fixed; the broken ALG must not:\n%s", got)
	}
}

// tcpPair is a TCP connection from an inside host through the box and the
// outside server's end of it.
type tcpPair struct {
	inside, server net.Conn
	ir, sr         *bufio.Reader
}

func connectThrough(t *testing.T, b *Box, n testNet, ln net.Listener) *tcpPair {
	t.Helper()
	v := view(t, b, ln.Addr().(*net.TCPAddr).AddrPort())
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(n.ip(hostA), 0)), Timeout: 3 * time.Second}
	in, err := d.Dial("tcp", v.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(3 * time.Second))
	srv, err := ln.Accept()
	if err != nil {
		t.Fatalf("the outside server got no connection: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return &tcpPair{in, srv, bufio.NewReader(in), bufio.NewReader(srv)}
}

func listenTCP(t *testing.T, ip netip.Addr) net.Listener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestTCPThroughBox: an inside host's TCP connection to a view reaches the
// outside server from the public address; SIP on it is rewritten message
// by message with Content-Length fixed, other bytes pass untouched; the
// public endpoint refuses unsolicited connections.
func TestTCPThroughBox(t *testing.T) {
	n := newTestNet()
	b := newBox(t, n, Symmetric.Config())
	ln := listenTCP(t, n.ip(hostO1))
	media := listenUDP(t, n.ip(hostO1), 0)
	c := connectThrough(t, b, n, ln)
	server := ln.Addr().(*net.TCPAddr).AddrPort()
	v := view(t, b, server)
	if src := c.server.RemoteAddr().(*net.TCPAddr).AddrPort(); src.Addr() != b.Public() {
		t.Errorf("the server sees the connection from %v, not the public address", src)
	}

	via := "Via: SIP/2.0/TCP " + c.inside.LocalAddr().String() + ";branch=z9hG4bKt1"
	inv := sipMessage("INVITE sip:bob@"+v.String()+";transport=tcp SIP/2.0", []string{via, "Route: <sip:" + v.String() + ";lr>"},
		sdp(n.ip(hostA), 4000)+"a=remote-candidate:"+v.Addr().String()+"\r\n")
	opt := sipMessage("OPTIONS sip:"+v.String()+" SIP/2.0", []string{via}, "")
	if _, err := io.WriteString(c.inside, "\r\n\r\n"+inv+opt); err != nil {
		t.Fatal(err)
	}
	_ = c.server.SetReadDeadline(time.Now().Add(3 * time.Second))
	ka := make([]byte, 4)
	if _, err := io.ReadFull(c.sr, ka); err != nil || string(ka) != "\r\n\r\n" {
		t.Fatalf("the keepalive arrived as %q (%v)", ka, err)
	}
	for _, want := range []string{"INVITE sip:bob@" + server.String() + ";transport=tcp", "OPTIONS sip:" + server.String()} {
		msg, err := readSIP(c.sr)
		if err != nil {
			t.Fatalf("reading the server's message: %v\n%s", err, msg)
		}
		if !strings.HasPrefix(msg, want) || header(msg, "Via") != via[len("Via: "):] {
			t.Errorf("the server got, wanting %q and the Via untouched:\n%s", want, msg)
		}
		if _, ok := bodyOf(msg); !ok {
			t.Errorf("Content-Length does not match the rewritten body:\n%s", msg)
		}
	}

	ok := sipMessage("SIP/2.0 200 OK", []string{via, "Contact: <sip:bob@" + server.String() + ";transport=tcp>"}, sdp(server.Addr(), media.addr().Port()))
	if _, err := io.WriteString(c.server, ok); err != nil {
		t.Fatal(err)
	}
	_ = c.inside.SetReadDeadline(time.Now().Add(3 * time.Second))
	msg, err := readSIP(c.ir)
	if err != nil {
		t.Fatalf("reading the inside host's message: %v\n%s", err, msg)
	}
	if body, ok := bodyOf(msg); !ok || !strings.Contains(body, "c=IN IP4 "+v.Addr().String()+"\r\n") {
		t.Errorf("the 200's SDP is not at the view or its Content-Length is wrong:\n%s", msg)
	}
	if want := "<sip:bob@" + v.String() + ";transport=tcp>"; header(msg, "Contact") != want {
		t.Errorf("Contact %q, want %q", header(msg, "Contact"), want)
	}
	listenUDP(t, n.ip(hostA), 0).send(view(t, b, media.addr()), "rtp")
	if d := media.recv(); d.src.Addr() != b.Public() {
		t.Errorf("media to the 200's SDP came from %v", d.src)
	}

	public := c.server.RemoteAddr().String()
	if conn, err := net.DialTimeout("tcp", public, 3*time.Second); err == nil {
		conn.Close()
		t.Errorf("an unsolicited connection to the public endpoint %s was accepted", public)
	}
}

// TestTCPIdleTimeout: a connection idle for TCPTimeout is closed at both ends.
func TestTCPIdleTimeout(t *testing.T) {
	n := newTestNet()
	cfg := typeWith(FullCone, func(c *Config) { c.TCPTimeout = 300 * time.Millisecond })
	b := newBox(t, n, cfg)
	ln := listenTCP(t, n.ip(hostO1))
	c := connectThrough(t, b, n, ln)
	if _, err := io.WriteString(c.inside, "ping"); err != nil {
		t.Fatal(err)
	}
	for name, conn := range map[string]net.Conn{"inside": c.inside, "server": c.server} {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Errorf("%s end: not closed by the idle timeout: %v (read %q)", name, err, got)
		}
	}
	eventually(t, 3*time.Second, func() bool { return len(b.Mappings()) == 0 }, "the TCP mapping outlived its connection: %v", b.Mappings())
}
