package sip

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo/sip"
)

// heldSources fakes the dialog layer: a source is in use while held.
type heldSources struct{ held atomic.Bool }

func (h *heldSources) HasSource(netip.AddrPort) bool { return h.held.Load() }

// pipeConn is one accepted connection over an in-memory pipe, with
// hygiene: the server side as sipgo reads it, and the peer's side.
func pipeConn(t *testing.T, idle time.Duration, inUse *heldSources, bad *[]string) (*screenConn, net.Conn) {
	server, peer := net.Pipe()
	h := &streamHygiene{message: 10 * time.Second, idle: idle, log: slog.New(slog.DiscardHandler), bindings: &Location{}, dialogs: inUse}
	l := &screenListener{parser: sip.NewParser(), hygiene: h, bad: func(reason string, _ net.Addr) { *bad = append(*bad, reason) }}
	c := &screenConn{Conn: server, l: l}
	if !h.open(c, time.Now()) {
		t.Fatal("connection refused")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

// ended reads c as sipgo would until it ends, and returns when that was
// and what sipgo got.
func ended(t *testing.T, c *screenConn) (time.Time, string) {
	got, err := readAll(t, c)
	if err != io.EOF {
		t.Errorf("connection ended with %v, want EOF", err)
	}
	return time.Now(), string(got)
}

// every writes each chunk to peer, waiting interval after each, until a
// write fails or the returned stop is called.
func every(peer net.Conn, interval time.Duration, chunks ...string) (stop func()) {
	done := make(chan struct{})
	go func() {
		for _, ch := range chunks {
			if _, err := peer.Write([]byte(ch)); err != nil {
				return
			}
			select {
			case <-time.After(interval):
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// drain reads what the proxy writes to the peer until it is closed.
func drain(peer net.Conn) *bytes.Buffer {
	var b bytes.Buffer
	go io.Copy(&b, peer)
	return &b
}

func TestStreamMessageDeadline(t *testing.T) {
	good := req("OPTIONS sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 OPTIONS", tCL0)
	t.Run("a byte every 5s is cut 10s after the first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var bad []string
			c, peer := pipeConn(t, time.Hour, &heldSources{}, &bad)
			start := time.Now()
			stop := every(peer, 5*time.Second, strings.Split(good, "")...)
			at, got := ended(t, c)
			stop()
			if took := at.Sub(start); took != 10*time.Second || got != "" || strings.Join(bad, ",") != "Incomplete Message" {
				t.Errorf("ended after %v, sipgo got %q, refused %q; want 10s, nothing, Incomplete Message", took, got, bad)
			}
		})
	})
	t.Run("a body shorter than Content-Length is answered and cut", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var bad []string
			c, peer := pipeConn(t, time.Hour, &heldSources{}, &bad)
			wrote := drain(peer)
			short := strings.Replace(good, tCL0, "Content-Length: 100", 1) + "ten bytes."
			time.Sleep(time.Minute) // the deadline runs from the first byte, not the accept
			start := time.Now()
			go peer.Write([]byte(good + short))
			at, got := ended(t, c)
			c.Close()
			synctest.Wait()
			if took := at.Sub(start); took != 10*time.Second || got != good || !strings.HasPrefix(wrote.String(), "SIP/2.0 400 Incomplete Message\r\n") {
				t.Errorf("ended after %v, sipgo got %q, answered %q; want 10s, the whole first message, 400", took, got, wrote)
			}
		})
	})
}

func TestStreamIdle(t *testing.T) {
	good := req("OPTIONS sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 OPTIONS", tCL0)
	t.Run("closed 2m after the last message; pings do not count", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var bad []string
			c, peer := pipeConn(t, 2*time.Minute, &heldSources{}, &bad)
			start := time.Now()
			stop := every(peer, 30*time.Second, good, "\r\n\r\n", "\r\n\r\n", "\r\n\r\n", "\r\n\r\n", "\r\n\r\n", "\r\n\r\n")
			at, got := ended(t, c)
			stop()
			if took := at.Sub(start); took != 2*time.Minute || !strings.HasPrefix(got, good) || len(bad) != 0 {
				t.Errorf("ended after %v, sipgo got %q, refused %q; want 2m0s, the OPTIONS and pings, nothing", took, got, bad)
			}
		})
	})
	t.Run("kept while in use, closed an idle period after", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var bad []string
			use := &heldSources{}
			use.held.Store(true)
			c, _ := pipeConn(t, 2*time.Minute, use, &bad)
			start := time.Now()
			go func() {
				time.Sleep(61 * time.Minute)
				use.held.Store(false)
			}()
			at, _ := ended(t, c)
			// Looked at every 2 minutes: the first look after it is
			// no longer in use closes it.
			if took := at.Sub(start); took != 62*time.Minute {
				t.Errorf("ended after %v, want 1h2m0s", took)
			}
		})
	})
}

// TestConnCounter: a source may hold max connections; more are refused
// (counted, logged once) until one closes; trusted networks and other
// sources are not limited, and a source leaves the table with its last
// connection.
func TestConnCounter(t *testing.T) {
	var log bytes.Buffer
	cc := newConnCounter(2, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, slog.New(slog.NewTextHandler(&log, nil)))
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.2")
	var releases []func()
	for range 2 {
		r, ok := cc.take(a)
		if !ok {
			t.Fatal("refused within the limit")
		}
		releases = append(releases, r)
	}
	for range 3 {
		if _, ok := cc.take(netip.MustParseAddr("::ffff:192.0.2.1")); ok {
			t.Fatal("a third connection from one source was taken")
		}
	}
	if _, ok := cc.take(b); !ok {
		t.Error("another source refused")
	}
	for range 5 {
		if _, ok := cc.take(netip.MustParseAddr("10.1.2.3")); !ok {
			t.Error("a trusted source refused")
		}
	}
	if n := cc.refused.Load(); n != 3 {
		t.Errorf("refused %d, want 3", n)
	}
	if n := strings.Count(log.String(), "over the per-source limit"); n != 1 {
		t.Errorf("%d log lines for the refusals, want 1:\n%s", n, log.String())
	}
	releases[0]()
	if r, ok := cc.take(a); !ok {
		t.Error("refused after one of its connections closed")
	} else {
		r()
	}
	releases[1]()
	if _, ok := cc.m[a]; ok || len(cc.m) != 1 {
		t.Errorf("table after a's connections closed: %v, want only b", cc.m)
	}
	if !strings.Contains(log.String(), "refused=3") {
		t.Errorf("no summary of a's refusals:\n%s", log.String())
	}
}
