// Command relaybench measures sipanchor's builtin RTP relay under load and,
// in the same run, two minimal forwarders as floors (fixed socket pairs, no
// per-packet logic): "floor" batches with recvmmsg/sendmmsg, "plain" does one
// recvfrom/sendto per packet. The relay's figures are ratios to the batched
// floor, which hold on a noisy machine.
//
// The load generator (this process) runs N calls: each call is two sockets
// sending G.711-sized RTP (12 + 160 bytes every 20 ms) in both directions
// through the system under test, which runs in a child process so its CPU
// and memory can be read from /proc on their own. Per step it reports
// packets per second, loss, added latency p50/p99 (send to receive, both
// legs through the relay), the child's CPU per forwarded packet and its
// resident memory per call.
//
//	relaybench [-steps 50,100,250,500] [-duration 4s] [-warmup 1s]
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"sipanchor/media"
	"sipanchor/relay"
	"sipanchor/relay/ng"
)

// pair is one call's generator sockets, relayPorts its ports on the child.
type pair struct{ Caller, Callee string }
type relayPorts struct{ A, B int }

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "child-relay":
			child(relayChild)
			return
		case "child-floor":
			child(floorChild)
			return
		case "child-plain":
			child(plainChild)
			return
		case "child-ngserver":
			ngServerChild()
			return
		}
	}
	steps := flag.String("steps", "50,100,250,500", "concurrent calls per step")
	withNG := flag.Bool("ng", false, "also run the load set up over NG: against sipanchor's NG server and against Debian's rtpengine (needs rtpengine-daemon)")
	dur := flag.Duration("duration", 4*time.Second, "measurement window per step")
	warm := flag.Duration("warmup", time.Second, "traffic before each window")
	flag.Parse()
	fmt.Printf("relaybench: G.711 (12+160 bytes, 20 ms), both directions, loopback, GOMAXPROCS=%s, %d CPUs\n",
		os.Getenv("GOMAXPROCS"), numCPU())
	fmt.Printf("%6s %-12s %9s %8s %9s %9s %11s %7s %10s\n", "calls", "mode", "pkt/s", "loss%", "p50 µs", "p99 µs", "cpu µs/pkt", "ratio", "KB/call")
	for _, s := range strings.Split(*steps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatal(fmt.Errorf("bad step %q", s))
		}
		floor := run("floor", n, *warm, *dur)
		plain := run("plain", n, *warm, *dur)
		rel := run("relay", n, *warm, *dur)
		rs := []result{floor, plain, rel}
		if *withNG {
			rs = append(rs, run("ng-sipanchor", n, *warm, *dur), run("ng-rtpengine", n, *warm, *dur))
		}
		for _, r := range rs {
			ratio := r.cpuPerPkt / floor.cpuPerPkt
			fmt.Printf("%6d %-12s %9.0f %8.3f %9.0f %9.0f %11.2f %7.2f %10.1f\n",
				n, r.mode, r.pps, r.loss*100, r.p50, r.p99, r.cpuPerPkt, ratio, r.kbPerCall)
		}
	}
}

type result struct {
	mode                string
	pps, loss, p50, p99 float64
	cpuPerPkt           float64 // µs
	kbPerCall           float64
}

// gen is one generator socket.
type gen struct {
	conn   *net.UDPConn
	dst    netip.AddrPort
	seq    uint16
	ssrc   uint32
	recv   atomic.Uint64 // packets sent in the window and received
	lat    []float64     // µs, window only (owned by the reader)
	window atomic.Bool
}

var epoch = time.Now()

func run(mode string, n int, warm, dur time.Duration) result {
	gens := make([]*gen, 2*n)
	pairs := make([]pair, n)
	for i := range n {
		a, b := listen("127.0.0.2"), listen("127.0.0.3")
		gens[2*i] = &gen{conn: a, ssrc: uint32(2 * i)}
		gens[2*i+1] = &gen{conn: b, ssrc: uint32(2*i + 1)}
		pairs[i] = pair{a.LocalAddr().String(), b.LocalAddr().String()}
	}
	sut := start(mode, pairs)
	lo := netip.MustParseAddr("127.0.0.1")
	for i, p := range sut.ports {
		gens[2*i].dst = netip.AddrPortFrom(lo, uint16(p.A))
		gens[2*i+1].dst = netip.AddrPortFrom(lo, uint16(p.B))
	}
	pid, rss0 := sut.pid, sut.rss0

	var wg sync.WaitGroup
	for _, g := range gens {
		wg.Go(func() { g.read() })
	}
	stop := make(chan struct{})
	var sent, sentWindow atomic.Uint64
	measuring := atomic.Bool{}
	sendDone := make(chan struct{})
	go func() { // one sender paces every call: 20 ms ticks
		defer close(sendDone)
		buf := make([]byte, 172)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			win := measuring.Load()
			for _, g := range gens {
				g.seq++
				buf[0], buf[1] = 0x80, 0
				binary.BigEndian.PutUint16(buf[2:], g.seq)
				binary.BigEndian.PutUint32(buf[4:], uint32(g.seq)*160)
				binary.BigEndian.PutUint32(buf[8:], g.ssrc)
				binary.BigEndian.PutUint64(buf[12:], uint64(time.Since(epoch)))
				buf[20] = 0
				if win {
					buf[20] = 1 // counted: sent in the window
				}
				if _, err := g.conn.WriteToUDPAddrPort(buf, g.dst); err == nil {
					sent.Add(1)
					if win {
						sentWindow.Add(1)
					}
				}
			}
		}
	}()
	time.Sleep(warm)
	rss1 := rss(pid)
	cpu0 := cpuNanos(pid)
	t0 := time.Now()
	for _, g := range gens {
		g.window.Store(true)
	}
	measuring.Store(true)
	time.Sleep(dur)
	measuring.Store(false)
	cpu1 := cpuNanos(pid)
	elapsed := time.Since(t0)
	time.Sleep(300 * time.Millisecond) // in flight
	close(stop)
	<-sendDone
	for _, g := range gens {
		g.conn.Close()
	}
	wg.Wait()
	sut.stop()

	var recv uint64
	var lats []float64
	for _, g := range gens {
		recv += g.recv.Load()
		lats = append(lats, g.lat...)
	}
	slices.Sort(lats)
	sw := sentWindow.Load()
	r := result{mode: mode, pps: float64(recv) / elapsed.Seconds()}
	if sw > 0 {
		r.loss = 1 - float64(recv)/float64(sw)
	}
	if len(lats) > 0 {
		r.p50, r.p99 = lats[len(lats)/2], lats[len(lats)*99/100]
	}
	if recv > 0 {
		// The child's CPU over the window per packet it forwarded.
		r.cpuPerPkt = float64(cpu1-cpu0) / 1e3 / float64(recv)
	}
	r.kbPerCall = float64(rss1-rss0) / 1024 / float64(n)
	return r
}

// sut is a system under test: a process forwarding the calls' media.
type sut struct {
	pid   int
	rss0  int64 // resident memory before the calls were set up
	ports []relayPorts
	stop  func()
}

// start runs mode's process and sets the calls up on it: directly for the
// children of this program, over NG for the ng-* modes.
func start(mode string, pairs []pair) sut {
	if strings.HasPrefix(mode, "ng-") {
		return startNG(mode, pairs)
	}
	self, _ := os.Executable()
	cmd := exec.Command(self, "child-"+mode)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	rd := bufio.NewReader(stdout)
	if line, _ := rd.ReadString('\n'); line != "ready\n" {
		fatal(fmt.Errorf("child %s: %q", mode, line))
	}
	rss0 := rss(cmd.Process.Pid)
	if err := json.NewEncoder(stdin).Encode(pairs); err != nil {
		fatal(err)
	}
	line, err := rd.ReadString('\n')
	if err != nil {
		fatal(fmt.Errorf("child %s: %w", mode, err))
	}
	var ports []relayPorts
	if err := json.Unmarshal([]byte(line), &ports); err != nil {
		fatal(fmt.Errorf("child %s: %q: %w", mode, line, err))
	}
	return sut{pid: cmd.Process.Pid, rss0: rss0, ports: ports, stop: func() { stdin.Close(); _ = cmd.Wait() }}
}

// startNG runs sipanchor's NG server (in a child of this program) or
// Debian's rtpengine, and sets every call up with an NG offer and answer,
// as Kamailio would.
func startNG(mode string, pairs []pair) sut {
	ngPort := freeUDPPort()
	var cmd *exec.Cmd
	switch mode {
	case "ng-sipanchor":
		self, _ := os.Executable()
		cmd = exec.Command(self, "child-ngserver", strconv.Itoa(ngPort))
	case "ng-rtpengine":
		bin, err := exec.LookPath("rtpengine")
		if err != nil {
			fatal(errors.New("rtpengine not found: apt-get install rtpengine-daemon"))
		}
		cmd = exec.Command(bin, "--foreground", "--table=-1", "--interface=127.0.0.1", "--config-file=none",
			fmt.Sprintf("--listen-ng=127.0.0.1:%d", ngPort), "--port-min=46000", "--port-max=49999",
			"--log-level=3", "--delete-delay=0", "--num-threads=2")
	default:
		fatal(fmt.Errorf("unknown mode %s", mode))
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the benchmark
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", ngPort))
	if err != nil {
		fatal(err)
	}
	seq := 0
	ask := func(d map[string]any) map[string]any {
		seq++ // a fresh cookie: a repeated one is a retransmission, answered from cache
		msg, _ := ng.Message(fmt.Sprintf("b%d", seq), d)
		buf := make([]byte, 65535)
		for range 100 {
			_, _ = c.Write(msg)
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			_, r, err := ng.ParseMessage(buf[:n])
			if err == nil {
				return r
			}
		}
		fatal(fmt.Errorf("%s: no NG reply to %v", mode, d["command"]))
		return nil
	}
	ask(map[string]any{"command": "ping"})
	rss0 := rss(cmd.Process.Pid)
	sdpOf := func(addr string) string {
		ap := netip.MustParseAddrPort(addr)
		return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", ap.Addr(), ap.Addr(), ap.Port())
	}
	portIn := func(r map[string]any) int {
		sdp, _ := r["sdp"].(string)
		for _, l := range strings.Split(sdp, "\r\n") {
			var p int
			if _, err := fmt.Sscanf(l, "m=audio %d", &p); err == nil {
				return p
			}
		}
		fatal(fmt.Errorf("%s: no port in %v", mode, r))
		return 0
	}
	ports := make([]relayPorts, len(pairs))
	for i, p := range pairs {
		id := fmt.Sprintf("bench-%d", i)
		o := ask(map[string]any{"command": "offer", "call-id": id, "from-tag": "f", "sdp": sdpOf(p.Caller)})
		a := ask(map[string]any{"command": "answer", "call-id": id, "from-tag": "f", "to-tag": "t", "sdp": sdpOf(p.Callee)})
		ports[i] = relayPorts{A: portIn(a), B: portIn(o)}
	}
	return sut{pid: cmd.Process.Pid, rss0: rss0, ports: ports, stop: func() {
		c.Close()
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}}
}

func freeUDPPort() int {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// ngServerChild: sipanchor's NG server over its builtin relay, on the port
// given, until interrupted.
func ngServerChild() {
	port, _ := strconv.Atoi(os.Args[2])
	lo := netip.MustParseAddr("127.0.0.1")
	r, err := media.NewRelay(media.Config{PortMin: 40000, PortMax: 59999, Bind: lo, Advertise: lo})
	if err != nil {
		fatal(err)
	}
	s, err := ng.NewServer(relay.NewBuiltin(r), ng.ServerConfig{Listen: netip.AddrPortFrom(lo, uint16(port))})
	if err != nil {
		fatal(err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	_ = s.Serve(ctx)
}

func (g *gen) read() {
	buf := make([]byte, 2048)
	for {
		n, _, err := g.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n < 21 || buf[20] != 1 {
			continue
		}
		sentAt := time.Duration(binary.BigEndian.Uint64(buf[12:]))
		g.recv.Add(1)
		g.lat = append(g.lat, float64(time.Since(epoch)-sentAt)/1e3)
	}
}

func listen(ip string) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		fatal(err)
	}
	_ = c.SetReadBuffer(1 << 20)
	return c
}

// child runs a system under test: "ready", then the call list on stdin,
// the ports on stdout, and forwarding until stdin closes.
func child(setup func([]pair) []relayPorts) {
	fmt.Println("ready")
	var pairs []pair
	if err := json.NewDecoder(os.Stdin).Decode(&pairs); err != nil {
		fatal(err)
	}
	b, _ := json.Marshal(setup(pairs))
	fmt.Println(string(b))
	_, _ = bufio.NewReader(os.Stdin).ReadString(0) // until EOF
}

// relayChild: sipanchor's media relay, one session per call, set up as the
// dialog layer does (an offer from the caller, an answer from the callee).
func relayChild(pairs []pair) []relayPorts {
	lo := netip.MustParseAddr("127.0.0.1")
	r, err := media.NewRelay(media.Config{PortMin: 40000, PortMax: 59999, Bind: lo, Advertise: lo})
	if err != nil {
		fatal(err)
	}
	out := make([]relayPorts, len(pairs))
	for i, p := range pairs {
		s, err := r.Open(strconv.Itoa(i))
		if err != nil {
			fatal(err)
		}
		pb, err := s.Apply(media.SideA, sdpInfo(p.Caller), true, false)
		if err != nil {
			fatal(err)
		}
		pa, err := s.Apply(media.SideB, sdpInfo(p.Callee), true, true)
		if err != nil {
			fatal(err)
		}
		out[i] = relayPorts{A: pa[0], B: pb[0]}
	}
	return out
}

func sdpInfo(addr string) *media.SDPInfo {
	ap := netip.MustParseAddrPort(addr)
	return &media.SDPInfo{Streams: []media.StreamInfo{{Media: "audio", Port: int(ap.Port()), RTCPPort: int(ap.Port()) + 1, Addr: ap.Addr(), ClockRate: 8000}}}
}

// floorChild: the least a forwarder can do. Fixed socket pairs, fixed
// destinations, recvmmsg/sendmmsg batches, no parsing, no counters.
func floorChild(pairs []pair) []relayPorts {
	out := make([]relayPorts, len(pairs))
	for i, p := range pairs {
		a, b := listen("127.0.0.1"), listen("127.0.0.1")
		caller, _ := net.ResolveUDPAddr("udp4", p.Caller)
		callee, _ := net.ResolveUDPAddr("udp4", p.Callee)
		pa, pb := ipv4.NewPacketConn(a), ipv4.NewPacketConn(b)
		go forwardBatch(pa, pb, callee)
		go forwardBatch(pb, pa, caller)
		out[i] = relayPorts{A: a.LocalAddr().(*net.UDPAddr).Port, B: b.LocalAddr().(*net.UDPAddr).Port}
	}
	return out
}

// plainChild: like floorChild with one recvfrom/sendto per packet.
func plainChild(pairs []pair) []relayPorts {
	out := make([]relayPorts, len(pairs))
	for i, p := range pairs {
		a, b := listen("127.0.0.1"), listen("127.0.0.1")
		caller := netip.MustParseAddrPort(p.Caller)
		callee := netip.MustParseAddrPort(p.Callee)
		go forwardPlain(a, b, callee)
		go forwardPlain(b, a, caller)
		out[i] = relayPorts{A: a.LocalAddr().(*net.UDPAddr).Port, B: b.LocalAddr().(*net.UDPAddr).Port}
	}
	return out
}

func forwardPlain(in, out *net.UDPConn, dst netip.AddrPort) {
	buf := make([]byte, 2048)
	for {
		n, _, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		_, _ = out.WriteToUDPAddrPort(buf[:n], dst)
	}
}

func forwardBatch(in, out *ipv4.PacketConn, dst *net.UDPAddr) {
	ms := make([]ipv4.Message, 16)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	for {
		n, err := in.ReadBatch(ms, 0)
		if err != nil {
			return
		}
		for i := range n {
			ms[i].Buffers[0] = ms[i].Buffers[0][:ms[i].N]
			ms[i].Addr = dst
		}
		_, _ = out.WriteBatch(ms[:n], 0)
		for i := range n {
			ms[i].Buffers[0] = ms[i].Buffers[0][:cap(ms[i].Buffers[0])]
		}
	}
}

// cpuNanos is a process's CPU time over all its threads, from schedstat.
func cpuNanos(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			sum += v
		}
	}
	return sum
}

// rss is a process's resident set in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "relaybench:", err)
	os.Exit(1)
}
