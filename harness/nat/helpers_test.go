package nat

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testNet is a random 127.R.S.0/24 for one test, R and S of two digits
// (so its addresses are never as long as a default view's 127.XXX.0.N),
// out of the default views' 127.128-254 and away from other tests' 127.0.0.1.
type testNet [3]byte

func newTestNet() testNet { return testNet{127, byte(10 + rand.IntN(90)), byte(10 + rand.IntN(90))} }

func (n testNet) ip(h byte) netip.Addr { return netip.AddrFrom4([4]byte{n[0], n[1], n[2], h}) }

// The hosts of a testNet.
const (
	hostA       = 2  // inside
	hostB       = 3  // inside
	hostO1      = 11 // outside
	hostO2      = 12
	hostO3      = 13
	hostPublic  = 60 // the box
	hostOutside = 99 // an outside host that tries the view sockets
)

// newBox starts a box on n with cfg's behaviours, inside hosts A and B,
// closed at cleanup.
func newBox(t *testing.T, n testNet, cfg Config) *Box {
	t.Helper()
	cfg.Inside = []netip.Addr{n.ip(hostA), n.ip(hostB)}
	cfg.Public = n.ip(hostPublic)
	if os.Getenv("NAT_TEST_LOG") != "" {
		cfg.Log = testLogger(t)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b
}

// typeWith is typ's Config, changed by edit.
func typeWith(typ Type, edit func(*Config)) Config {
	c := typ.Config()
	edit(&c)
	return c
}

// view is b.View(o), failing the test on error.
func view(t *testing.T, b *Box, o netip.AddrPort) netip.AddrPort {
	t.Helper()
	v, err := b.View(o)
	if err != nil {
		t.Fatalf("view of %v: %v", o, err)
	}
	return v
}

// udpPeer is a UDP socket of a test host.
type udpPeer struct {
	t testing.TB
	c *net.UDPConn
}

// listenUDP binds ip:port (0: any port), closed at cleanup.
func listenUDP(t testing.TB, ip netip.Addr, port uint16) *udpPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpPeer{t: t, c: c}
}

func (p *udpPeer) addr() netip.AddrPort { return p.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *udpPeer) send(to netip.AddrPort, msg string) {
	p.t.Helper()
	if _, err := p.c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		p.t.Fatalf("%v sending to %v: %v", p.addr(), to, err)
	}
}

type datagram struct {
	msg string
	src netip.AddrPort
}

// read returns the next datagram, or ok false after d.
func (p *udpPeer) read(d time.Duration) (datagram, bool) {
	p.t.Helper()
	buf := make([]byte, 65536)
	_ = p.c.SetReadDeadline(time.Now().Add(d))
	n, src, err := p.c.ReadFromUDPAddrPort(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return datagram{}, false
	}
	if err != nil {
		p.t.Fatalf("%v reading: %v", p.addr(), err)
	}
	return datagram{string(buf[:n]), src}, true
}

// recv waits for the next datagram.
func (p *udpPeer) recv() datagram {
	p.t.Helper()
	d, ok := p.read(3 * time.Second)
	if !ok {
		p.t.Fatalf("%v: nothing arrived in 3s", p.addr())
	}
	return d
}

// recvUpTo returns the datagrams that arrive before one whose text is
// marker (which a test sends last, on a path that always passes).
func (p *udpPeer) recvUpTo(marker string) []datagram {
	p.t.Helper()
	var got []datagram
	for {
		d := p.recv()
		if d.msg == marker {
			return got
		}
		got = append(got, d)
	}
}

// silent asserts that nothing arrives for d.
func (p *udpPeer) silent(d time.Duration, what string) {
	p.t.Helper()
	if g, ok := p.read(d); ok {
		p.t.Fatalf("%s: %v got %q from %v", what, p.addr(), g.msg, g.src)
	}
}

// eventually waits until cond holds, failing the test after timeout.
// (dialog, media and cmd/sipanchor have the same helper.)
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after %v: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sipMessage is a SIP message with start line, headers and an SDP body
// whose Content-Length is right.
func sipMessage(start string, headers []string, body string) string {
	var b strings.Builder
	b.WriteString(start + "\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// sdp is an audio offer at ip:port.
func sdp(ip netip.Addr, port uint16) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\nm=audio %[2]d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", ip, port)
}

// readSIP reads one SIP message from a stream: headers, then
// Content-Length bytes of body.
func readSIP(r *bufio.Reader) (string, error) {
	var b strings.Builder
	length := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		b.WriteString(line)
		if line == "\r\n" {
			break
		}
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, length)
	_, err := io.ReadFull(r, body)
	b.Write(body)
	return b.String(), err
}

// header is the value of msg's first header name (case as written), or "".
func header(msg, name string) string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		if n, v, ok := strings.Cut(line, ":"); ok && n == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// bodyOf is msg's body and whether its Content-Length says its length.
func bodyOf(msg string) (string, bool) {
	_, body, _ := strings.Cut(msg, "\r\n\r\n")
	n, err := strconv.Atoi(header(msg, "Content-Length"))
	return body, err == nil && n == len(body)
}

// testLogger logs to t, for NAT_TEST_LOG=1 go test -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
