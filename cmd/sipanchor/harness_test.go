package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the sipanchor binary the end-to-end tests run, built once by
// TestMain with the race detector.
var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() { // unit tests only: every e2e test skips (requireE2E)
		binPath = "/sipanchor-not-built-under-short:call-requireE2E"
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "sipanchor-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "sipanchor")
	build := exec.Command("go", "build", "-race", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sipanchor:", err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildDir holds the binaries TestMain and plainBinary build.
var buildDir string

// plainBinary is sipanchor built without the race detector, built on first
// use: for tests of memory, which the race detector multiplies (its shadow
// of the heap is never given back to the OS, so RSS cannot come down).
var plainBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(buildDir, "sipanchor-norace")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building sipanchor without -race: %v\n%s", err, out)
	}
	return bin, nil
})

// freePort finds a port free on 127.0.0.1 for both UDP and TCP, and never
// the same one twice in this test binary: the sockets that proved it free
// are closed before it is used, so two calls in a row (a SIP port and an
// API port) could otherwise get the same number.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		if _, taken := handedOut.LoadOrStore(port, true); taken {
			continue
		}
		return port
	}
	t.Fatal("no free port")
	return 0
}

// handedOut holds the ports freePort has returned.
var handedOut sync.Map

// proxy is a running sipanchor process.
type proxy struct {
	t       *testing.T
	dir     string
	cfgPath string
	port    int // SIP, udp and tcp on 127.0.0.1
	api     string
	token   string
	cmd     *exec.Cmd
	bin     string // the binary run; "" = binPath
	log     *syncBuffer
	done    chan error
}

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

// proxyConfig is the config the tests run with; extra is appended TOML.
func proxyConfig(dir string, port, apiPort int, sipExtra, extra, token string) string {
	// Short expiries for the tests, unless the test sets its own.
	registrar := "\n[registrar]\nmin_expires = 1\n"
	if strings.Contains(extra, "[registrar]") {
		registrar = ""
	}
	// No flood bans in tests that send fast from one address, unless the
	// test sets its own limits. Nor load shedding: a race-instrumented
	// binary on a busy CI machine can leave a datagram unread for longer
	// than max_queue_delay's 200 ms, and a call test must not get a 503
	// for it (the overload tests set [limits]).
	if !strings.Contains(extra, "[limits]") {
		registrar += "\n[limits]\nmax_requests = 1000000\nmax_queue_delay = \"5s\"\n"
	}
	// Debug logs, unless the test sets its own level.
	logs := "\n[log]\nlevel = \"debug\"\n"
	if strings.Contains(extra, "[log]") {
		logs = ""
	}
	return fmt.Sprintf(`[sip]
listen = ["udp:127.0.0.1:%[1]d", "tcp:127.0.0.1:%[1]d"]
domains = ["example.test"]
%[6]s
%[5]s
[store]
path = %[2]q

[api]
listen = "127.0.0.1:%[3]d"
token = %[7]q
%[8]s
%[4]s`, port, filepath.Join(dir, "sipanchor.db"), apiPort, extra, registrar, sipExtra, token, logs)
}

// startProxy runs sipanchor with proxyConfig(extra) and waits until it
// answers OPTIONS. It is stopped (and its exit checked) at cleanup.
func startProxy(t *testing.T, extra string) *proxy {
	t.Helper()
	return startProxyOnPort(t, freePort(t), extra)
}

// startProxySIP is startProxy with more keys in the [sip] table.
func startProxySIP(t *testing.T, sipExtra, extra string) *proxy {
	t.Helper()
	return startProxyFull(t, freePort(t), sipExtra, extra)
}

// startProxyOnPort is startProxy with the SIP port chosen by the caller.
func startProxyOnPort(t *testing.T, port int, extra string) *proxy {
	t.Helper()
	return startProxyFull(t, port, "", extra)
}

// startProxyWithAPIToken is startProxy with [api] token set.
func startProxyWithAPIToken(t *testing.T, token string) *proxy {
	t.Helper()
	return startProxyToken(t, freePort(t), "", "", token)
}

func startProxyFull(t *testing.T, port int, sipExtra, extra string) *proxy {
	t.Helper()
	return startProxyToken(t, port, sipExtra, extra, "")
}

func startProxyToken(t *testing.T, port int, sipExtra, extra, token string) *proxy {
	t.Helper()
	return startProxyBin(t, "", port, sipExtra, extra, token)
}

// startProxyBin is startProxyToken running bin ("" = binPath).
func startProxyBin(t *testing.T, bin string, port int, sipExtra, extra, token string) *proxy {
	t.Helper()
	requireE2E(t)
	dir := t.TempDir()
	p := &proxy{t: t, dir: dir, port: port, token: token, bin: bin}
	apiPort := freePort(t)
	p.api = fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	p.cfgPath = filepath.Join(dir, "sipanchor.toml")
	if err := os.WriteFile(p.cfgPath, []byte(proxyConfig(dir, p.port, apiPort, sipExtra, extra, token)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start() {
	t := p.t
	t.Helper()
	p.log = &syncBuffer{}
	bin := binPath
	if p.bin != "" {
		bin = p.bin
	}
	p.cmd = exec.Command(bin, "serve", "-c", p.cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait() }()
	exited := false
	up := poll(10*time.Second, func() bool {
		if !p.alive() {
			exited = true
			return true
		}
		req, _ := http.NewRequest("GET", p.api+"/api/v1/health", nil)
		if p.token != "" {
			req.Header.Set("Authorization", "Bearer "+p.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	switch {
	case exited:
		err := <-p.done
		p.done <- err
		t.Fatalf("sipanchor exited at start: %v\n%s", err, p.log.String())
	case !up:
		t.Fatalf("sipanchor did not come up\n%s", p.log.String())
	}
}

// stop sends SIGTERM and expects a clean exit within 5 s.
func (p *proxy) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Errorf("sipanchor exit: %v", err)
		}
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		p.t.Errorf("sipanchor did not stop on SIGTERM")
	}
	if strings.Contains(p.log.String(), "WARNING: DATA RACE") || strings.Contains(p.log.String(), "panic:") {
		p.t.Errorf("sipanchor reported a race or panic:\n%s", p.log.String())
	}
	if p.t.Failed() {
		p.t.Logf("sipanchor log:\n%s", tail(p.log.String(), 150))
	}
	p.cmd = nil
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proxy) alive() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// waitIdle waits until no dialog, relay session or port pair is left.
func (p *proxy) waitIdle(what string) {
	p.t.Helper()
	var h map[string]float64
	eventually(p.t, 3*time.Second, func() bool {
		h = p.health()
		return h["dialogs"] == 0 && h["relay_sessions"] == 0 && h["port_pairs_used"] == 0
	}, "%s: dialogs, relay sessions and port pairs still in use: %v", what, &h)
}

// registrations reads GET /api/v1/registrations.
func (p *proxy) registrations() []map[string]any {
	p.t.Helper()
	resp, err := http.Get(p.api + "/api/v1/registrations")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		p.t.Fatal(err)
	}
	return out
}

// logLines returns the log lines containing s.
func (p *proxy) logLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			out = append(out, sc.Text())
		}
	}
	return out
}
