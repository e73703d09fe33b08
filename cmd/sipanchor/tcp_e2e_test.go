package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// connClosed reports, without waiting, whether the proxy has closed u's
// TCP connection; messages that arrived meanwhile are dropped.
func (u *ua) connClosed() bool {
	for {
		select {
		case _, ok := <-u.in:
			if !ok {
				return true
			}
		default:
			return false
		}
	}
}

// dribble writes msg to c one byte every interval until a write fails
// (the proxy closed the connection) or stop is closed.
func dribble(c net.Conn, msg []byte, interval time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for _, b := range msg {
		if _, err := c.Write([]byte{b}); err != nil {
			return
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}

// openCount is how many of us still have their connection open.
func openCount(us []*ua) int {
	n := 0
	for _, u := range us {
		if !u.connClosed() {
			n++
		}
	}
	return n
}

// backTo waits until the proxy's goroutines and open files are back
// within the given slack of base (a health reading from before).
func (p *proxy) backTo(t *testing.T, base map[string]float64, goroutines, files float64) {
	t.Helper()
	var h map[string]float64
	eventually(t, 10*time.Second, func() bool {
		h = p.health()
		return h["goroutines"] <= base["goroutines"]+goroutines && h["open_files"] <= base["open_files"]+files
	}, "goroutines/open files %v, baseline %v/%v", &h, base["goroutines"], base["open_files"])
}

// TestTCPIncompleteMessageIsCut: with tcp_message_timeout = 1s, a message
// begun over TCP must be whole within 1 s. Twenty slow-loris connections,
// each sending an OPTIONS one byte every 500 ms, are all closed, while a
// normal client's OPTIONS over TCP is answered 200 meanwhile; a request
// whose body stays shorter than its Content-Length is answered 400 and
// its connection closed. The proxy's goroutines and files come back.
func TestTCPIncompleteMessageIsCut(t *testing.T) {
	p := startProxySIP(t, "tcp_message_timeout = \"1s\"\ntcp_idle_timeout = \"60s\"\n", "")
	base := p.health()
	t.Run("slow loris", func(t *testing.T) {
		const n = 20
		stop := make(chan struct{})
		defer close(stop)
		var lorises []*ua
		for range n {
			u := newTCPUA(t, "loris", "127.0.0.20", p, "127.0.0.20")
			msg := crlf(fmt.Sprintf("OPTIONS sip:127.0.0.1:%d SIP/2.0\n%s\nMax-Forwards: 70\nFrom: <sip:loris@example.test>;tag=%s\nTo: <sip:127.0.0.1:%d>\nCall-ID: loris-%s\nCSeq: 1 OPTIONS\n\n",
				p.port, u.via(randTag()), randTag(), p.port, randTag()))
			go dribble(u.tc, []byte(msg), 500*time.Millisecond, stop)
			lorises = append(lorises, u)
		}
		alice := newTCPUA(t, "alice", "127.0.0.2", p, "127.0.0.2")
		if !alice.optionsAnswered(p, 3*time.Second) {
			t.Error("a normal client's OPTIONS over TCP was not answered while the slow connections dribbled")
		}
		open := n
		if !poll(5*time.Second, func() bool { open = openCount(lorises); return open == 0 }) {
			t.Fatalf("5 s on, %d of %d connections sending a byte every 500 ms are still open (tcp_message_timeout 1s)", open, n)
		}
		if !alice.optionsAnswered(p, 3*time.Second) {
			t.Error("the normal client's OPTIONS was not answered after the slow connections were cut")
		}
	})
	t.Run("body shorter than Content-Length", func(t *testing.T) {
		r := newRawPeer(t, "tcp", p)
		text := strings.Replace(optionsToProxy(p), "Content-Length: 0", "Content-Length: 100", 1) + "ten bytes."
		r.send(r.fill(text, "short1", "short-body@127.0.0.2"))
		start := time.Now()
		res, err := r.next(5 * time.Second)
		if err != nil || !strings.HasPrefix(statusLine(res), "SIP/2.0 400") || !strings.Contains(res, "short-body@127.0.0.2") {
			t.Fatalf("after %v: %q %v; want a 400 to the request whose body never came", time.Since(start).Round(time.Millisecond), statusLine(res), err)
		}
		if took := time.Since(start); took < 900*time.Millisecond {
			t.Errorf("answered after %v, before tcp_message_timeout (1s) passed", took)
		}
		if res, err := r.next(3 * time.Second); err != io.EOF {
			t.Errorf("connection not closed after the 400: %q %v", statusLine(res), err)
		}
	})
	p.backTo(t, base, 10, 2)
}

// TestTCPIdleConnectionClosedUnlessInUse: with tcp_idle_timeout = 1s, a
// TCP connection that sent one OPTIONS and then nothing is closed; one
// through which a UA registered stays open, and a call to that user still
// reaches it over it; one whose client is in a call stays open while the
// call lasts (the callee's BYE reaches it) and is closed once it ended.
func TestTCPIdleConnectionClosedUnlessInUse(t *testing.T) {
	p := startProxySIP(t, "tcp_message_timeout = \"1s\"\ntcp_idle_timeout = \"1s\"\n", "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	idle := newTCPUA(t, "idle", "127.0.0.21", p, "127.0.0.21")
	if !idle.optionsAnswered(p, 3*time.Second) {
		t.Fatal("OPTIONS over TCP not answered")
	}
	carol := newTCPUA(t, "carol", "127.0.0.4", p, "10.1.2.3")
	if res := carol.register(600); res.StatusCode != 200 {
		t.Fatalf("TCP REGISTER: %d", res.StatusCode)
	}
	dave := newTCPUA(t, "dave", "127.0.0.5", p, "127.0.0.5")
	_, db := call(t, dave, bob)

	eventually(t, 4*time.Second, idle.connClosed, "a TCP connection with no binding or dialog, silent since its OPTIONS, still open (tcp_idle_timeout 1s)")
	never(t, 3*time.Second, func() bool { return carol.connClosed() || dave.connClosed() },
		"a TCP connection closed for being idle although it carries a binding (carol) or a call (dave)")

	alice.invite("sip:carol@example.test")
	carol.recv("INVITE over the registered, idle connection", isRequest("INVITE"))
	bob.request(db, "BYE")
	dave.okTo(dave.recv("BYE over the caller's idle connection", isRequest("BYE")))
	bob.recv("200 to BYE", isResponse(200, "BYE"))
	eventually(t, 5*time.Second, dave.connClosed, "the caller's TCP connection still open after its call ended (tcp_idle_timeout 1s)")
}

// TestTCPConnectionsPerSource: with tcp_max_per_source = 5, a sixth to
// eighth connection from one address is closed at once, logged once and
// counted; another address and a trusted peer are unaffected. Once the
// five close, the address may connect again and the proxy's goroutines
// and files are back where they were.
func TestTCPConnectionsPerSource(t *testing.T) {
	p := startProxySIP(t, "tcp_max_per_source = 5\n", "[[peer]]\nname = \"pbx\"\nnetworks = [\"127.0.0.24/32\"]\n")
	base := p.health()
	var held []*ua
	for range 5 {
		u := newTCPUA(t, "many", "127.0.0.22", p, "127.0.0.22")
		if !u.optionsAnswered(p, 3*time.Second) {
			t.Fatalf("connection %d of 127.0.0.22 (within the limit) not answered", len(held)+1)
		}
		held = append(held, u)
	}
	var extra []*ua
	for range 3 {
		extra = append(extra, newTCPUA(t, "many", "127.0.0.22", p, "127.0.0.22"))
	}
	open := len(extra)
	if !poll(3*time.Second, func() bool { open = openCount(extra); return open == 0 }) {
		t.Fatalf("3 s on, %d of 3 connections of 127.0.0.22 beyond tcp_max_per_source = 5 are still open", open)
	}
	other := newTCPUA(t, "other", "127.0.0.23", p, "127.0.0.23")
	if !other.optionsAnswered(p, 3*time.Second) {
		t.Error("another address's connection was not served")
	}
	for i := range 7 {
		u := newTCPUA(t, "pbx", "127.0.0.24", p, "127.0.0.24")
		if !u.optionsAnswered(p, 3*time.Second) {
			t.Fatalf("the trusted peer's connection %d was not served", i+1)
		}
		held = append(held, u)
	}
	if got := p.logLines("connections over the per-source limit"); len(got) != 1 || !strings.Contains(got[0], "127.0.0.22") {
		t.Errorf("log lines = %q, want exactly one naming 127.0.0.22", got)
	}
	if m := p.metricsText(); !strings.Contains(m, `sipanchor_sip_dropped_total{reason="tcp_per_source"} 3`) {
		t.Errorf("want 3 refused connections in /metrics:\n%s", m)
	}
	for _, u := range held { // 127.0.0.22's five, then the peer's
		u.tc.Close()
	}
	// The proxy sees the closes a moment later: until then a new
	// connection may still be one too many.
	eventually(t, 3*time.Second, func() bool {
		again := newTCPUA(t, "many", "127.0.0.22", p, "127.0.0.22")
		defer again.tc.Close()
		return again.optionsAnswered(p, 500*time.Millisecond)
	}, "127.0.0.22 still refused after its connections closed")
	other.tc.Close()
	p.backTo(t, base, 10, 2)
}
