package harness

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// options sends OPTIONS to addr over transport and returns the status line.
func options(t *testing.T, transport, addr string) string {
	t.Helper()
	c, err := net.DialTimeout(transport, addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	tr := strings.ToUpper(transport)
	msg := fmt.Sprintf("OPTIONS sip:%[1]s SIP/2.0\r\nVia: SIP/2.0/%[3]s %[2]s;branch=z9hG4bK%[4]d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:probe@example.test>;tag=1\r\nTo: <sip:%[1]s>\r\nCall-ID: %[4]d@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		addr, local, tr, time.Now().UnixNano())
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("OPTIONS over %s to %s: no answer: %v", transport, addr, err)
	}
	return strings.TrimSpace(line)
}

// Two instances run in one test binary, each on its own ephemeral port,
// the same one for UDP and TCP; each is stopped (its ports released) by
// its test's cleanup.
func TestTwoInstancesInOneProcess(t *testing.T) {
	var addrs []string
	t.Run("instances", func(t *testing.T) {
		a, b := Start(t, Options{}), Start(t, Options{Engage: "never"})
		for _, s := range []*SBC{a, b} {
			udp, tcp := s.Addr("udp"), s.Addr("tcp")
			if udp.Port() == 0 || udp != tcp {
				t.Errorf("udp %v, tcp %v: want one ephemeral port for both", udp, tcp)
			}
			for _, tr := range []string{"udp", "tcp"} {
				if got := options(t, tr, s.Addr(tr).String()); got != "SIP/2.0 200 OK" {
					t.Errorf("OPTIONS over %s: %q", tr, got)
				}
			}
			addrs = append(addrs, s.Addr("tcp").String())
		}
		if a.Addr("udp") == b.Addr("udp") {
			t.Fatalf("both instances on %v", a.Addr("udp"))
		}
	})
	for _, a := range addrs { // stopped by the subtest's cleanup
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after cleanup", a)
		}
	}
}

// A configuration mistake in Options.TOML is reported with its key.
func TestBadOptionsTOML(t *testing.T) {
	ft := &fatalT{T: t}
	func() {
		defer func() { _ = recover() }()
		Start(ft, Options{TOML: "[media]\nport_min = 3\n"})
	}()
	if !strings.Contains(ft.msg, "media.port_min") {
		t.Fatalf("want an error naming media.port_min, got %q", ft.msg)
	}
}

// fatalT records a Fatalf instead of ending the test.
type fatalT struct {
	*testing.T
	msg string
}

func (f *fatalT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f.msg)
}

// sipgo's timers are process-wide: a second instance that wants another
// T1 is refused with a reason, and the first keeps its timers.
func TestOtherT1Refused(t *testing.T) {
	a := Start(t, Options{})
	ft := &fatalT{T: t}
	func() {
		defer func() { _ = recover() }()
		Start(ft, Options{TOML: "[sip]\nt1 = \"50ms\"\n"})
	}()
	if !strings.Contains(ft.msg, "process-wide") {
		t.Fatalf("want a refusal naming sipgo's process-wide timers, got %q", ft.msg)
	}
	if got := options(t, "udp", a.Addr("udp").String()); got != "SIP/2.0 200 OK" {
		t.Fatalf("first instance after the refusal: %q", got)
	}
}
