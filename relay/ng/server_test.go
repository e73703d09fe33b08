package ng

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sipanchor/media"
	"sipanchor/relay"
)

func newServer(t *testing.T) (*Server, *relay.Builtin, *net.UDPConn) {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	rl, err := media.NewRelay(media.Config{PortMin: 43300, PortMax: 43399, Bind: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	b := relay.NewBuiltin(rl)
	s, err := NewServer(b, ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; rl.Close() })
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, b, c
}

var cookieN int

// ask sends one command and returns the reply dictionary.
func ask(t *testing.T, c *net.UDPConn, d map[string]any) map[string]any {
	t.Helper()
	cookieN++
	return askCookie(t, c, fmt.Sprintf("%d_%d", time.Now().UnixNano(), cookieN), d)
}

func askCookie(t *testing.T, c *net.UDPConn, cookie string, d map[string]any) map[string]any {
	t.Helper()
	msg, err := Message(cookie, d)
	if err != nil {
		t.Fatal(err)
	}
	return askRaw(t, c, cookie, msg)
}

func askRaw(t *testing.T, c *net.UDPConn, cookie string, msg []byte) map[string]any {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	got, d, err := ParseMessage(buf[:n])
	if err != nil || got != cookie {
		t.Fatalf("reply %q: cookie %q, %v", buf[:n], got, err)
	}
	return d
}

func sdp(ip string, port int) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", ip, ip, port)
}

func portOf(t *testing.T, s string) int {
	t.Helper()
	for _, l := range strings.Split(s, "\r\n") {
		var p int
		if _, err := fmt.Sscanf(l, "m=audio %d", &p); err == nil {
			return p
		}
	}
	t.Fatalf("no m=audio in %q", s)
	return 0
}

func TestNGCallFlow(t *testing.T) {
	_, b, c := newServer(t)
	if r := ask(t, c, map[string]any{"command": "ping"}); r["result"] != "pong" {
		t.Fatalf("ping: %v", r)
	}
	caller, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	callee, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	defer caller.Close()
	defer callee.Close()
	cp, ep := caller.LocalAddr().(*net.UDPAddr).Port, callee.LocalAddr().(*net.UDPAddr).Port

	offer := ask(t, c, map[string]any{"command": "offer", "call-id": "c1", "from-tag": "ft", "sdp": sdp("127.0.0.2", cp),
		"flags": []any{"trust-address", "port-latching"}, "replace": []any{"origin", "session-connection"}, "ICE": "remove",
		"received from": []any{"IP4", "127.0.0.2"}})
	if offer["result"] != "ok" || !strings.Contains(offer["sdp"].(string), "o=- 1 1 IN IP4 127.0.0.1") {
		t.Fatalf("offer: %v", offer)
	}
	if w, _ := offer["warning"].(string); !strings.Contains(w, "port-latching") {
		t.Errorf("unknown flag not reported: %v", offer)
	}
	toCallee := portOf(t, offer["sdp"].(string))
	answer := ask(t, c, map[string]any{"command": "answer", "call-id": "c1", "from-tag": "ft", "to-tag": "tt", "sdp": sdp("127.0.0.3", ep)})
	if answer["result"] != "ok" {
		t.Fatalf("answer: %v", answer)
	}
	toCaller := portOf(t, answer["sdp"].(string))

	// RTP both ways through the relay.
	rtp := []byte{0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 'x'}
	relayAt := func(p int) *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p} }
	caller.WriteToUDP(rtp, relayAt(toCaller))
	callee.WriteToUDP(rtp, relayAt(toCallee))
	buf := make([]byte, 100)
	for _, u := range []*net.UDPConn{caller, callee} {
		_ = u.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := u.ReadFromUDP(buf); err != nil {
			t.Fatalf("no RTP at %s: %v", u.LocalAddr(), err)
		}
	}

	// A re-INVITE from the callee: from-tag is the callee's. Same session,
	// same ports (a new session here would be one-way audio).
	re := ask(t, c, map[string]any{"command": "offer", "call-id": "c1", "from-tag": "tt", "sdp": sdp("127.0.0.3", ep)})
	if re["result"] != "ok" || portOf(t, re["sdp"].(string)) != toCaller {
		t.Errorf("callee's re-offer: %v (want port %d toward the caller)", re, toCaller)
	}
	ra := ask(t, c, map[string]any{"command": "answer", "call-id": "c1", "from-tag": "tt", "to-tag": "ft", "sdp": sdp("127.0.0.2", cp)})
	if ra["result"] != "ok" || portOf(t, ra["sdp"].(string)) != toCallee {
		t.Errorf("caller's re-answer: %v (want port %d toward the callee)", ra, toCallee)
	}
	if n := b.Sessions(); n != 1 {
		t.Errorf("%d relay sessions, want 1", n)
	}

	q := ask(t, c, map[string]any{"command": "query", "call-id": "c1"})
	totals, _ := q["totals"].(map[string]any)
	rtpTot, _ := totals["RTP"].(map[string]any)
	if q["result"] != "ok" || rtpTot["packets"] != int64(2) {
		t.Errorf("query: %v", q)
	}
	if tags, _ := q["tags"].(map[string]any); tags["ft"] == nil || tags["tt"] == nil {
		t.Errorf("query tags: %v", q["tags"])
	}
	if l := ask(t, c, map[string]any{"command": "list"}); fmt.Sprint(l["calls"]) != "[c1]" {
		t.Errorf("list: %v", l)
	}
	if st := ask(t, c, map[string]any{"command": "statistics"}); st["result"] != "ok" {
		t.Errorf("statistics: %v", st)
	}

	del := ask(t, c, map[string]any{"command": "delete", "call-id": "c1", "from-tag": "ft", "to-tag": "tt"})
	if del["result"] != "ok" || del["totals"] == nil {
		t.Errorf("delete: %v", del)
	}
	if n := b.Sessions(); n != 0 {
		t.Errorf("%d relay sessions after delete", n)
	}
	if q := ask(t, c, map[string]any{"command": "query", "call-id": "c1"}); q["result"] != "error" {
		t.Errorf("query after delete: %v", q)
	}
}

func TestNGRetransmissionNotExecutedTwice(t *testing.T) {
	_, b, c := newServer(t)
	d := map[string]any{"command": "offer", "call-id": "r1", "from-tag": "f", "sdp": sdp("127.0.0.2", 4000)}
	first := askCookie(t, c, "same-cookie", d)
	second := askCookie(t, c, "same-cookie", d)
	if first["sdp"] != second["sdp"] || b.Sessions() != 1 {
		t.Errorf("retransmission: %v / %v, %d sessions", first, second, b.Sessions())
	}
	used, _ := b.Relay().PortPairs()
	if used != 2 {
		t.Errorf("%d port pairs for one offer sent twice, want 2", used)
	}
}

func TestNGErrorsKeepServing(t *testing.T) {
	_, _, c := newServer(t)
	for _, tc := range []struct {
		raw  string
		want string
	}{
		{"k1 d7:command", "malformed request"},
		{"k2 li1ee", "malformed request"},
		{"k3 d7:command4:zorke", "unknown command"},
		{"k4 d7:command15:start recordinge", "not supported"},
		{"k5 d7:command5:offere", "no call-id"},
		{"k6 d7:command5:offer7:call-id1:x8:from-tag1:f3:sdp3:xyze", "sdp"},
		{"k7 d7:command6:answer7:call-id2:zz8:from-tag1:f6:to-tag1:t3:sdp3:v=0e", "unknown call-id"},
		{"k8 d7:command6:delete7:call-id2:zze", "unknown call-id"},
	} {
		cookie := strings.Fields(tc.raw)[0]
		r := askRaw(t, c, cookie, []byte(tc.raw))
		if r["result"] != "error" || !strings.Contains(fmt.Sprint(r["error-reason"]), tc.want) {
			t.Errorf("%q → %v, want error with %q", tc.raw, r, tc.want)
		}
	}
	if r := ask(t, c, map[string]any{"command": "ping"}); r["result"] != "pong" {
		t.Errorf("server stopped serving: %v", r)
	}
}

func TestNGAllow(t *testing.T) {
	s := &Server{allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tc := range []struct {
		a    string
		want bool
	}{{"127.0.0.1", true}, {"::1", true}, {"10.1.2.3", true}, {"192.0.2.1", false}} {
		if got := s.allowed(netip.MustParseAddr(tc.a)); got != tc.want {
			t.Errorf("allowed(%s) = %v", tc.a, got)
		}
	}
}

func FuzzServerDatagram(f *testing.F) {
	f.Add([]byte("c d7:command4:pinge"))
	f.Add([]byte("c d7:command5:offer7:call-id1:x8:from-tag1:f3:sdp10:v=0\r\nm=a\r\ne"))
	f.Add([]byte("c d7:command6:delete7:call-id1:xe"))
	lo := netip.MustParseAddr("127.0.0.1")
	rl, err := media.NewRelay(media.Config{PortMin: 43400, PortMax: 43499, Bind: lo, Advertise: lo})
	if err != nil {
		f.Fatal(err)
	}
	defer rl.Close()
	s := &Server{engine: relay.NewBuiltin(rl), calls: map[string]*call{}, served: map[string]uint64{}, cache: map[string]cached{},
		log: discard()}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := s.datagram(context.Background(), b, netip.MustParseAddrPort("127.0.0.1:9"))
		if out == nil {
			return
		}
		if _, d, err := ParseMessage(out); err != nil || d["result"] == nil {
			t.Fatalf("reply %q to %q: %v", out, b, err)
		}
	})
}
