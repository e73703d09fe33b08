// Package harness runs sipanchor inside a Go test, to test SIP user agents
// through it: Start brings up a complete sipanchor (SIP on ephemeral
// ports, a temporary store, the builtin media relay, the HTTP API) that
// t.Cleanup stops; the SBC's methods wait for what the proxy saw (a
// registration, a call) and assert on a call's media as the relay counted
// it (packets each way, payload types, strangers, loss, jitter) with the
// relay's own plain-words diagnosis when an assertion fails.
//
// Several instances may run in one test binary, in parallel, provided they
// use the same SIP T1 (sipgo keeps its transaction timers process-wide).
package harness

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sipanchor/config"
	"sipanchor/server"
	"sipanchor/sip"
)

// Options shape a harness instance. The zero value is a working SBC: SIP
// over UDP and TCP on 127.0.0.1 (one ephemeral port), domain
// "example.test", every call's media anchored, the API on an ephemeral
// loopback port.
type Options struct {
	// TOML is configuration read over the harness defaults, in the
	// format of sipanchor's config file (see `sipanchor config defaults`).
	TOML string
	// Engage is [relay] engage: "always" (the default) anchors every
	// call's media, "never" only proxies SIP (media flows end to end).
	Engage string
	// Domain is the SIP domain UAs register in; default "example.test".
	Domain string
	// Host is the loopback IP sipanchor binds SIP and media to; default
	// 127.0.0.1.
	Host netip.Addr
	// Wait bounds every Wait and Expect helper; default 10 s.
	Wait time.Duration
	// LogLevel of sipanchor's log, which is shown when the test fails;
	// default info.
	LogLevel slog.Level
}

// SBC is a running sipanchor inside a test.
type SBC struct {
	t    testing.TB
	opts Options
	srv  *server.Server
	log  *logBuffer
}

// Start starts sipanchor for t and returns once it accepts SIP. It is
// stopped by t.Cleanup, which fails the test if it stopped with an error.
func Start(t testing.TB, o Options) *SBC {
	t.Helper()
	o = o.withDefaults()
	cfg, err := Config(o, t.TempDir())
	if err != nil {
		t.Fatalf("harness: configuration: %v", err)
	}
	lb := &logBuffer{}
	log := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: o.LogLevel}))
	srv, err := server.Start(context.Background(), cfg, "harness", log)
	if err != nil {
		t.Fatalf("harness: starting sipanchor: %v", err)
	}
	s := &SBC{t: t, opts: o, srv: srv, log: lb}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("harness: sipanchor stopped with: %v", err)
		}
		if t.Failed() {
			t.Logf("sipanchor's log (last lines):\n%s", lb.tail(60))
		}
	})
	return s
}

// Config is the configuration Start runs with, its store in dir: for a
// runner that starts sipanchor (package server) without a testing.TB.
func Config(o Options, dir string) (*config.Config, error) {
	o = o.withDefaults()
	return config.ParseOver([]byte(baseConfig(o, dir)), "harness.Options.TOML", []byte(o.TOML))
}

func (o Options) withDefaults() Options {
	if o.Engage == "" {
		o.Engage = "always"
	}
	if o.Domain == "" {
		o.Domain = "example.test"
	}
	if !o.Host.IsValid() {
		o.Host = netip.MustParseAddr("127.0.0.1")
	}
	if o.Wait == 0 {
		o.Wait = 10 * time.Second
	}
	return o
}

// baseConfig is the harness's layer of defaults: ephemeral ports, a store
// in dir, a media port window of its own (the relay skips ports another
// process holds, so instances in parallel do not collide), registrations
// as short as a test wants, no flood bans or load shedding for a test
// that sends fast.
func baseConfig(o Options, dir string) string {
	portMin := 20000 + 2*rand.IntN(4500) // even, window inside 20000..29400
	return fmt.Sprintf(`[sip]
listen = ["udp:%[1]s", "tcp:%[1]s"]
domains = [%[2]q]

[registrar]
min_expires = 1

[limits]
max_requests = 1000000
max_queue_delay = "5s"

[relay]
engage = %[3]q

[media]
bind = %[4]q
port_min = %[5]d
port_max = %[6]d

[store]
path = %[7]q

[api]
listen = "127.0.0.1:0"
`, netip.AddrPortFrom(o.Host, 0), o.Domain, o.Engage, o.Host.String(), portMin, portMin+599, filepath.Join(dir, "sipanchor.db"))
}

// Server is the running sipanchor, for what the helpers do not cover.
func (s *SBC) Server() *server.Server { return s.srv }

// Addr is the SIP listener for transport ("udp" or "tcp").
func (s *SBC) Addr(transport string) netip.AddrPort {
	s.t.Helper()
	for _, a := range s.srv.SIPAddrs() {
		tr, hostport, _ := strings.Cut(a, ":")
		if tr == transport {
			return netip.MustParseAddrPort(hostport)
		}
	}
	s.t.Fatalf("harness: no %s listener (have %v)", transport, s.srv.SIPAddrs())
	return netip.AddrPort{}
}

// Domain is the SIP domain UAs register in.
func (s *SBC) Domain() string { return s.opts.Domain }

// APIURL is the base URL of the HTTP API (see the README's API section).
func (s *SBC) APIURL() string { return "http://" + s.srv.APIAddr() }

// Registrations are the live bindings of aor ("user@domain").
func (s *SBC) Registrations(aor string) []sip.Binding {
	return s.srv.Proxy().Location().Lookup(aor, time.Now())
}

// WaitRegistered waits until aor ("user@domain") has a live binding and
// returns it (the newest).
func (s *SBC) WaitRegistered(aor string) sip.Binding {
	s.t.Helper()
	var b sip.Binding
	s.waitFor("a registration of "+aor, func() bool {
		bs := s.Registrations(aor)
		if len(bs) == 0 {
			return false
		}
		b = bs[len(bs)-1]
		return true
	})
	return b
}

// waitFor polls cond until it holds, failing the test at the deadline.
func (s *SBC) waitFor(what string, cond func() bool) {
	s.t.Helper()
	if !poll(s.opts.Wait, cond) {
		s.t.Fatalf("harness: no %s within %v", what, s.opts.Wait)
	}
}

// poll calls cond every 20 ms until it is true (true) or d passes (false).
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logBuffer keeps sipanchor's log for the failure report.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<20 { // a long test keeps its last few MiB
		l.b.Next(l.b.Len() / 2)
	}
	return l.b.Write(p)
}

func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
