package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// pollEvery is how often eventually and never look at their condition.
const pollEvery = 20 * time.Millisecond

// poll calls cond every pollEvery until it holds (true) or timeout has
// passed (false). cond is always called at least once.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
}

// eventually waits until cond holds, failing the test with the message if
// it still does not after timeout. Arguments are formatted when it fails:
// pass a pointer to see a value as it was last.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("still not so after %v: %s", timeout, fmt.Sprintf(format, args...))
	}
}

// never asserts that cond does not hold at any time during d: it watches
// cond for the whole of d, and fails the test as soon as it holds.
func never(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	start := time.Now()
	if poll(d, cond) {
		t.Fatalf("after %v (within %v): %s", time.Since(start).Round(time.Millisecond), d, fmt.Sprintf(format, args...))
	}
}

// udpBound reports whether some process has a UDP socket bound to addr,
// or to its port on the wildcard address, per /proc/net/udp{,6}: how the
// tests know a peer they started (SIPp) is ready without sending it a
// message its scenario does not expect.
func udpBound(t testing.TB, addr netip.AddrPort) bool {
	t.Helper()
	want := fmt.Sprintf(":%04X", addr.Port())
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatalf("reading bound sockets: %v", err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 || !strings.HasSuffix(fields[1], want) {
				continue
			}
			ip := strings.TrimSuffix(fields[1], want)
			if strings.Trim(ip, "0") == "" || ip == procIPv4(addr.Addr()) {
				fh.Close()
				return true
			}
		}
		fh.Close()
	}
	return false
}

// procIPv4 is a as /proc/net/udp writes it: four bytes, in host order
// (little-endian here), as hex.
func procIPv4(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("%02X%02X%02X%02X", b[3], b[2], b[1], b[0])
}

// requireE2E skips t under -short: end-to-end tests run the sipanchor
// binary (which TestMain builds only without -short) and real peers.
// Every helper that starts a process calls it; so must any test that runs
// binPath itself.
func requireE2E(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
}
