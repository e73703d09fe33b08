package nat

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseType(t *testing.T) {
	for _, typ := range []Type{FullCone, RestrictedCone, PortRestrictedCone, Symmetric} {
		got, err := ParseType(typ.String())
		if err != nil || got != typ {
			t.Errorf("ParseType(%q) = %v, %v", typ.String(), got, err)
		}
	}
	if _, err := ParseType("cone"); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "symmetric") {
		t.Errorf("ParseType(cone): %v, want ErrConfig listing the types", err)
	}
}

func TestNewRejects(t *testing.T) {
	in, pub := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.60")
	ok := Symmetric.Config()
	ok.Inside, ok.Public = []netip.Addr{in}, pub
	cases := []struct {
		name, want string
		edit       func(*Config)
	}{
		{"no mapping", "mapping", func(c *Config) { c.Mapping = BehaviorUnknown }},
		{"no filtering", "filtering", func(c *Config) { c.Filtering = BehaviorUnknown }},
		{"no inside", "inside", func(c *Config) { c.Inside = nil }},
		{"ipv6 inside", "inside", func(c *Config) { c.Inside = []netip.Addr{netip.MustParseAddr("::1")} }},
		{"no public", "public", func(c *Config) { c.Public = netip.Addr{} }},
		{"public inside", "public", func(c *Config) { c.Public = in }},
		{"view holds inside", "view", func(c *Config) { c.View = netip.MustParsePrefix("127.0.0.0/24") }},
		{"negative timeout", "timeout", func(c *Config) { c.UDPTimeout = -time.Second }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			b, err := New(c)
			if err == nil {
				b.Close()
				t.Fatal("New accepted it")
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want ErrConfig naming %q", err, tc.want)
			}
		})
	}
}

// TestDefaultView: without a View the box picks a 127.X.0.0/16 that holds
// none of its addresses, and two boxes never share one.
func TestDefaultView(t *testing.T) {
	n := newTestNet()
	a, b := newBox(t, n, FullCone.Config()), newBox(t, n, FullCone.Config())
	for _, box := range []*Box{a, b} {
		p := box.ViewPrefix()
		if p.Bits() != 16 || p.Addr().As4()[0] != 127 || p.Contains(box.Public()) || p.Contains(n.ip(hostA)) {
			t.Errorf("default view %v", p)
		}
	}
	if a.ViewPrefix() == b.ViewPrefix() {
		t.Errorf("two boxes share the view %v", a.ViewPrefix())
	}
	v, err := a.View(netip.AddrPortFrom(n.ip(hostA), 5060))
	if !errors.Is(err, ErrNotOutside) {
		t.Errorf("View of an inside host: %v, %v; want ErrNotOutside", v, err)
	}
	if v, err := a.View(netip.MustParseAddrPort("192.0.2.1:5060")); err != nil || !a.ViewPrefix().Contains(v.Addr()) || v.Port() != 5060 {
		t.Errorf("View of an address outside 127/8: %v, %v", v, err)
	}
}

// TestCloseLeavesNothing: after UDP and TCP traffic, Close stops every
// goroutine and frees every socket the box had.
func TestCloseLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	n := newTestNet()
	cfg := Symmetric.Config()
	cfg.Inside, cfg.Public = []netip.Addr{n.ip(hostA)}, n.ip(hostPublic)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o := listenUDP(t, n.ip(hostO1), 0)
	u := listenUDP(t, n.ip(hostA), 0)
	v := view(t, b, o.addr())
	u.send(v, "x")
	public := o.recv().src
	ln := listenTCP(t, n.ip(hostO1))
	c := connectThrough(t, b, n, ln)
	if _, err := io.WriteString(c.inside, "x"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() bool { return runtime.NumGoroutine() <= before }, "goroutines: %d before, %d after Close", before, runtime.NumGoroutine())
	for _, ap := range []netip.AddrPort{v, public} {
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			t.Errorf("%v still bound after Close: %v", ap, err)
			continue
		}
		pc.Close()
	}
	if _, err := b.View(o.addr()); !errors.Is(err, ErrClosed) {
		t.Errorf("View after Close: %v, want ErrClosed", err)
	}
}
