package sip

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	optionsMsg = []byte("OPTIONS sip:x@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\r\n")
	okMsg      = []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\r\n")
)

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func testPike(max, sources int, exempt ...netip.Prefix) (*pike, *logBuf) {
	lb := &logBuf{}
	return newPike(time.Second, 10*time.Second, max, sources, exempt, slog.New(slog.NewTextHandler(lb, nil))), lb
}

func TestPikeBansOnceAndLiftsTheBan(t *testing.T) {
	k, lb := testPike(10, 1024)
	a := netip.MustParseAddr("192.0.2.1")
	t0 := time.Unix(1000, 0)
	for i := range 10 {
		if v := k.admit(a, optionsMsg, t0.Add(time.Duration(i)*time.Millisecond)); v != pass {
			t.Fatalf("request %d: %v, want pass", i+1, v)
		}
	}
	if v := k.admit(a, optionsMsg, t0.Add(20*time.Millisecond)); v != dropRate {
		t.Fatalf("11th request in the window: %v, want dropRate", v)
	}
	for i := range 100 {
		if v := k.admit(a, okMsg, t0.Add(time.Duration(30+i)*time.Millisecond)); v != dropBanned {
			t.Fatalf("message while banned: %v, want dropBanned", v)
		}
	}
	if n := lb.count("source banned"); n != 1 {
		t.Errorf("ban logged %d times, want once", n)
	}
	bs := k.Bans(t0.Add(time.Second))
	if len(bs) != 1 || bs[0].IP != a || bs[0].Requests != 11 || bs[0].Dropped != 100 || bs[0].Until.Sub(bs[0].Since) != 10*time.Second {
		t.Fatalf("bans = %+v", bs)
	}
	if b, r := k.droppedBanned.Load(), k.droppedRate.Load(); b != 100 || r != 1 {
		t.Errorf("dropped banned %d rate %d, want 100 and 1", b, r)
	}
	// Another source is not affected.
	if v := k.admit(netip.MustParseAddr("192.0.2.2"), optionsMsg, t0); v != pass {
		t.Errorf("another source: %v", v)
	}
	// The ban ends by itself; the sweeper logs it once.
	k.sweep(t0.Add(11 * time.Second))
	k.sweep(t0.Add(12 * time.Second))
	if n := lb.count("source unbanned"); n != 1 {
		t.Errorf("unban logged %d times, want once", n)
	}
	if v := k.admit(a, optionsMsg, t0.Add(12*time.Second)); v != pass {
		t.Errorf("after the ban: %v, want pass", v)
	}
}

func TestPikeWindowsAndWhatCounts(t *testing.T) {
	k, _ := testPike(5, 1024)
	a := netip.MustParseAddr("2001:db8::1")
	t0 := time.Unix(1000, 0)
	// 5 a second for 10 seconds never bans.
	for i := range 50 {
		if v := k.admit(a, optionsMsg, t0.Add(time.Duration(i)*200*time.Millisecond)); v != pass {
			t.Fatalf("request %d at the limit's rate: %v", i, v)
		}
	}
	// Responses and keepalives are not counted.
	b := netip.MustParseAddr("192.0.2.7")
	for range 1000 {
		for _, m := range [][]byte{okMsg, []byte("\r\n\r\n"), []byte("\r\n")} {
			if v := k.admit(b, m, t0); v != pass {
				t.Fatalf("%q: %v", m, v)
			}
		}
	}
	// An IPv4-mapped address is the IPv4 address.
	c := netip.MustParseAddr("192.0.2.9")
	for range 5 {
		k.admit(netip.AddrFrom16(c.As16()), optionsMsg, t0)
	}
	if v := k.admit(c, optionsMsg, t0); v != dropRate {
		t.Errorf("6th request, via its mapped form: %v", v)
	}
}

func TestPikeExemptsTrustedPeers(t *testing.T) {
	k, lb := testPike(5, 1024, netip.MustParsePrefix("198.51.100.0/24"))
	t0 := time.Unix(1000, 0)
	for range 1000 {
		if v := k.admit(netip.MustParseAddr("198.51.100.7"), optionsMsg, t0); v != pass {
			t.Fatalf("trusted peer: %v", v)
		}
	}
	if lb.count("source banned") != 0 || len(k.Bans(t0)) != 0 || k.size() != 0 {
		t.Errorf("trusted peer tracked or banned")
	}
}

func TestPikeUnban(t *testing.T) {
	k, lb := testPike(1, 1024)
	a := netip.MustParseAddr("192.0.2.1")
	t0 := time.Unix(1000, 0)
	k.admit(a, optionsMsg, t0)
	k.admit(a, optionsMsg, t0)
	if !k.banned(a, t0) {
		t.Fatal("not banned")
	}
	if k.Unban(netip.MustParseAddr("192.0.2.99"), t0) {
		t.Error("unbanned an address that was not banned")
	}
	if !k.Unban(a, t0) || k.banned(a, t0) || len(k.Bans(t0)) != 0 {
		t.Fatal("Unban did not lift the ban")
	}
	if v := k.admit(a, optionsMsg, t0); v != pass {
		t.Errorf("after Unban: %v", v)
	}
	if n := lb.count("source unbanned"); n != 1 {
		t.Errorf("unban logged %d times", n)
	}
}

// TestPikeTableIsBounded: a flood from a million addresses keeps at most
// max_sources of them; the active flooder, seen all the time, stays banned.
func TestPikeTableIsBounded(t *testing.T) {
	const sources = 4096
	k, _ := testPike(3, sources)
	t0 := time.Unix(1000, 0)
	flooder := netip.MustParseAddr("203.0.113.1")
	for i := range 1_000_000 {
		b := [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
		k.admit(netip.AddrFrom4(b), optionsMsg, t0)
		if i%100 == 0 {
			k.admit(flooder, optionsMsg, t0)
		}
	}
	if n := k.size(); n > sources {
		t.Errorf("%d sources tracked, want at most %d", n, sources)
	}
	if !k.banned(flooder, t0) {
		t.Error("the flooder's ban was forgotten")
	}
	// Quiet sources are forgotten by the sweeper.
	k.sweep(t0.Add(2 * time.Second))
	if n := k.size(); n != 1 {
		t.Errorf("%d sources after the sweep, want only the banned one", n)
	}
}

func TestPikeOff(t *testing.T) {
	k, _ := testPike(0, 1024)
	for range 1000 {
		if v := k.admit(netip.MustParseAddr("192.0.2.1"), optionsMsg, time.Unix(1, 0)); v != pass {
			t.Fatal("max_requests = 0 banned")
		}
	}
}

func FuzzPikeAdmit(f *testing.F) {
	f.Add(optionsMsg, []byte{192, 0, 2, 1})
	f.Add(okMsg, []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte("\r\n\r\n"), []byte{127, 0, 0, 1})
	f.Add([]byte{}, []byte{})
	k, _ := testPike(2, 64)
	f.Fuzz(func(t *testing.T, data, ip []byte) {
		a, _ := netip.AddrFromSlice(ip)
		k.admit(a, data, time.Unix(1000, 0))
		if k.size() > 64 {
			t.Fatalf("table grew to %d", k.size())
		}
	})
}

// BenchmarkPikeBanned is the cost of a datagram from a banned source, from
// one source (one shard) and from many at once.
func BenchmarkPikeBanned(b *testing.B) {
	k, _ := testPike(1, 65536)
	now := time.Unix(1000, 0)
	addrs := make([]netip.Addr, 256)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		k.admit(addrs[i], optionsMsg, now)
		k.admit(addrs[i], optionsMsg, now)
	}
	b.Run("one-source", func(b *testing.B) {
		for b.Loop() {
			if k.admit(addrs[0], optionsMsg, now) != dropBanned {
				b.Fatal("not banned")
			}
		}
	})
	b.Run("parallel-sources", func(b *testing.B) {
		var n sync.Mutex
		next := 0
		b.RunParallel(func(pb *testing.PB) {
			n.Lock()
			a := addrs[next%len(addrs)]
			next++
			n.Unlock()
			for pb.Next() {
				k.admit(a, optionsMsg, now)
			}
		})
	})
}

// BenchmarkPikeCounted is the cost for a source that is counted, not banned.
func BenchmarkPikeCounted(b *testing.B) {
	k, _ := testPike(1<<30, 65536)
	now := time.Unix(1000, 0)
	b.RunParallel(func(pb *testing.PB) {
		a := netip.MustParseAddr(fmt.Sprintf("10.1.0.%d", time.Now().UnixNano()%250))
		for pb.Next() {
			k.admit(a, optionsMsg, now)
		}
	})
}
