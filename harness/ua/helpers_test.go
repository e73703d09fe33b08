package ua

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// poll calls cond every 10 ms until it holds (true) or timeout has passed.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// eventually fails the test if cond does not hold within timeout.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("still not so after %v: %s", timeout, fmt.Sprintf(format, args...))
	}
}

// lazy formats as what f returns when the message is written, for
// eventually's arguments (evaluated when it fails, not when called).
type lazy func() any

func (l lazy) String() string { return fmt.Sprint(l()) }

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newUA starts a UA on ip towards server and closes it after the test.
func newUA(t testing.TB, cfg Config) *UA {
	t.Helper()
	if cfg.User == "" {
		cfg.User = "alice"
	}
	if cfg.Domain == "" {
		cfg.Domain = "example.test"
	}
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// freePort is a UDP port free on ip now, with port+2 free too (SIPp's
// -rtp_echo binds -mp and -mp+2).
func freePort(t testing.TB, ip string) int {
	t.Helper()
	for range 100 {
		a, err := net.ListenPacket("udp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		p := a.LocalAddr().(*net.UDPAddr).Port
		b, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(p+2)))
		a.Close()
		if err == nil {
			b.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sippRun is a SIPp process started by a test.
type sippRun struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	dir  string
	done chan error
}

// scenario is the path of a SIPp scenario of testdata/sipp.
func scenario(name string) string {
	p, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "sipp", name))
	return p
}

// startSIPp runs Debian's SIPp (package sip-tester) bound to ip:port,
// and returns once its SIP socket is bound. Without SIPp the test fails,
// never skips (CI installs it); under -short (make unit) it skips, as the
// project's other tests with real peers do.
func startSIPp(t *testing.T, ip string, port int, tcp bool, args ...string) *sippRun {
	t.Helper()
	if testing.Short() {
		t.Skip("SIPp test: skipped under -short")
	}
	bin, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatal("sipp not found: install Debian's sip-tester (bash .ci/run does)")
	}
	r := &sippRun{out: &syncBuffer{}, dir: t.TempDir(), done: make(chan error, 1)}
	args = append([]string{"-i", ip, "-p", strconv.Itoa(port), "-nostdin", "-timeout", "30s", "-trace_msg", "-trace_err"}, args...)
	r.cmd = exec.Command(bin, args...)
	r.cmd.Dir = r.dir
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() { _ = r.cmd.Process.Kill() })
	addr := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
	eventually(t, 10*time.Second, func() bool { return bound(t, addr, tcp) }, "sipp never bound %s:\n%s", addr, r.out)
	return r
}

// wait waits for SIPp to exit and fails the test unless it exited 0 (every
// call of its scenario successful).
func (r *sippRun) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("sipp: %v\n%s\n%s", err, tail(r.out.String(), 30), r.messages(t))
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("sipp did not finish\n%s", tail(r.out.String(), 30))
	}
	if n := sippCount(r.out.String(), "Successful call"); n < 1 {
		t.Fatalf("sipp counted %d successful calls\n%s", n, tail(r.out.String(), 30))
	}
}

// messages is what SIPp's -trace_msg logged: every message it sent and
// received.
func (r *sippRun) messages(t *testing.T) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(r.dir, "*_messages.log"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		b.Write(data)
	}
	return b.String()
}

// sippCount reads a cumulative counter of SIPp's final statistics
// ("Successful call", "Failed call"), or -1.
func sippCount(out, what string) int {
	n := -1
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Split(l, "|"); len(f) >= 3 && strings.TrimSpace(f[0]) == what {
			if v, err := strconv.Atoi(strings.TrimSpace(f[2])); err == nil {
				n = v
			}
		}
	}
	return n
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// bound reports whether a socket is bound to addr (UDP) or listening on it
// (TCP), per /proc/net: how a test knows SIPp is ready without sending it
// a message its scenario does not expect.
func bound(t testing.TB, addr netip.AddrPort, tcp bool) bool {
	t.Helper()
	file := "/proc/net/udp"
	if tcp {
		file = "/proc/net/tcp"
	}
	fh, err := os.Open(file)
	if err != nil {
		t.Fatalf("reading bound sockets: %v", err)
	}
	defer fh.Close()
	b := addr.Addr().As4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", b[3], b[2], b[1], b[0], addr.Port())
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 3 && f[1] == want && (!tcp || f[3] == "0A") {
			return true
		}
	}
	return false
}
