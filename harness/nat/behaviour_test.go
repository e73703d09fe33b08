package nat

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestRFC4787Behaviours checks each NAT type against RFC 4787's
// definitions, on real sockets.
//
// Mapping (§4.1): an inside endpoint U sends to O1:p1, O1:p2 and O2:p1.
// Endpoint-independent mapping reuses one public endpoint for all three;
// address-dependent reuses it for the same IP only (O1:p1, O1:p2);
// address-and-port-dependent uses a new one for each destination.
//
// Filtering (§5): another inside endpoint sends to O1:p1 only; then
// O1:p1, O1:p2, O2:p1 and a stranger O3:p3 send to the public endpoint it
// got. Endpoint-independent filtering lets all in; address-dependent only
// those on O1 (the IP it sent to); address-and-port-dependent only O1:p1.
// What passes must come from the sender's view address.
func TestRFC4787Behaviours(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		// §4.1: the mapping used for O1:p1 is used for O1:p2, for O2:p1.
		samePort, sameIP bool
		// §5: which of O1:p1, O1:p2, O2:p1, O3:p3 reach the inside endpoint.
		pass [4]bool
	}{
		{"full cone (EIM, EIF)", FullCone.Config(), true, true, [4]bool{true, true, true, true}},
		{"restricted cone (EIM, ADF)", RestrictedCone.Config(), true, true, [4]bool{true, true, false, false}},
		{"port-restricted cone (EIM, APDF)", PortRestrictedCone.Config(), true, true, [4]bool{true, false, false, false}},
		{"symmetric (APDM, APDF)", Symmetric.Config(), false, false, [4]bool{true, false, false, false}},
		{"address-dependent (ADM, ADF)", Config{Mapping: AddressDependent, Filtering: AddressDependent}, true, false, [4]bool{true, true, false, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet()
			b := newBox(t, n, tc.cfg)
			o1p1 := listenUDP(t, n.ip(hostO1), 0)
			p1 := o1p1.addr().Port()
			o1p2 := listenUDP(t, n.ip(hostO1), 0)
			o2p1 := listenUDP(t, n.ip(hostO2), p1)
			o3p3 := listenUDP(t, n.ip(hostO3), 0)

			u := listenUDP(t, n.ip(hostA), 0)
			var seen [3]netip.AddrPort
			for i, o := range []*udpPeer{o1p1, o1p2, o2p1} {
				u.send(view(t, b, o.addr()), fmt.Sprintf("map %d", i))
				seen[i] = o.recv().src
				if seen[i].Addr() != b.Public() {
					t.Fatalf("%v saw the inside host's packet from %v, not from the public address %v", o.addr(), seen[i], b.Public())
				}
			}
			if got := seen[0] == seen[1]; got != tc.samePort {
				t.Errorf("mapping: to O1:p1 from %v, to O1:p2 from %v: same = %v, want %v", seen[0], seen[1], got, tc.samePort)
			}
			if got := seen[0] == seen[2]; got != tc.sameIP {
				t.Errorf("mapping: to O1:p1 from %v, to O2:p1 from %v: same = %v, want %v", seen[0], seen[2], got, tc.sameIP)
			}

			in := listenUDP(t, n.ip(hostA), 0)
			in.send(view(t, b, o1p1.addr()), "open")
			public := o1p1.recv().src
			senders := []*udpPeer{o1p1, o1p2, o2p1, o3p3}
			for i, o := range senders {
				o.send(public, fmt.Sprintf("in %d", i))
			}
			o1p1.send(public, "end")
			arrived := map[string]netip.AddrPort{}
			for _, d := range in.recvUpTo("end") {
				arrived[d.msg] = d.src
			}
			dropped := 0
			for i, o := range senders {
				src, ok := arrived[fmt.Sprintf("in %d", i)]
				if ok != tc.pass[i] {
					t.Errorf("filtering: from %v to %v: arrived = %v, want %v", o.addr(), public, ok, tc.pass[i])
				}
				if want := view(t, b, o.addr()); ok && src != want {
					t.Errorf("filtering: from %v: arrived from %v, want its view %v", o.addr(), src, want)
				}
				if !tc.pass[i] {
					dropped++
				}
			}
			if got := b.Stats().Filtered; got != uint64(dropped) {
				t.Errorf("Stats().Filtered = %d, want %d", got, dropped)
			}
		})
	}
}

// TestPortPreservation: RFC 4787 §4.2.1, a new mapping keeps the inside
// port when it is free on the public address, and only when asked to.
func TestPortPreservation(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("preservation=%v", on), func(t *testing.T) {
			n := newTestNet()
			cfg := typeWith(PortRestrictedCone, func(c *Config) { c.PortPreservation = on })
			b := newBox(t, n, cfg)
			o := listenUDP(t, n.ip(hostO1), 0)
			u := listenUDP(t, n.ip(hostA), 0)
			u.send(view(t, b, o.addr()), "hi")
			src := o.recv().src
			if kept := src.Port() == u.addr().Port(); kept != on {
				t.Errorf("inside %v came out as %v: port kept = %v, want %v", u.addr(), src, kept, on)
			}
		})
	}
}

// TestBindingTimeout: RFC 4787 §4.3. A mapping with no outbound traffic
// for UDPTimeout is gone — inbound traffic does not keep it (REQ-6 asks
// outbound refresh; we do not do inbound refresh) — after which inbound
// packets are dropped and the next outbound packet makes a new mapping.
func TestBindingTimeout(t *testing.T) {
	n := newTestNet()
	cfg := typeWith(FullCone, func(c *Config) { c.UDPTimeout = 300 * time.Millisecond })
	b := newBox(t, n, cfg)
	o := listenUDP(t, n.ip(hostO1), 0)
	u := listenUDP(t, n.ip(hostA), 0)
	v := view(t, b, o.addr())
	u.send(v, "out 1")
	public := o.recv().src
	o.send(public, "in")
	if d := u.recv(); d.msg != "in" || d.src != v {
		t.Fatalf("inside host got %q from %v, want \"in\" from %v", d.msg, d.src, v)
	}
	start := time.Now()
	eventually(t, 5*time.Second, func() bool {
		o.send(public, "keep?") // inbound only: must not refresh
		return len(b.Mappings()) == 0
	}, "the mapping %v is still there with only inbound traffic", public)
	if took := time.Since(start); took < cfg.UDPTimeout/2 {
		t.Errorf("the mapping went after %v, before its timeout %v", took, cfg.UDPTimeout)
	}
	o.send(public, "late")
	for {
		d, ok := u.read(200 * time.Millisecond)
		if !ok {
			break
		}
		if d.msg == "late" {
			t.Fatalf("a packet to the expired mapping %v was delivered", public)
		}
	}
	if s := b.Stats(); s.Expired != 1 || s.Mapped != 1 {
		t.Errorf("stats after expiry: %+v, want Mapped 1, Expired 1", s)
	}
	u.send(v, "out 2")
	if d := o.recv(); d.msg != "out 2" || d.src.Addr() != b.Public() {
		t.Fatalf("after expiry the outside got %q from %v", d.msg, d.src)
	}
	if s := b.Stats(); s.Mapped != 2 {
		t.Errorf("the packet after expiry made no new mapping: %+v", s)
	}
}

// TestHairpin: RFC 4787 §6. An inside host sending to another inside
// host's public endpoint reaches it, from its own public endpoint
// ("external source IP address and port", REQ-9), when hairpinning is on;
// with it off the packet is dropped.
func TestHairpin(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("hairpin=%v", on), func(t *testing.T) {
			n := newTestNet()
			cfg := typeWith(FullCone, func(c *Config) { c.Hairpin = on })
			b := newBox(t, n, cfg)
			o := listenUDP(t, n.ip(hostO1), 0)
			ua := listenUDP(t, n.ip(hostA), 0)
			ub := listenUDP(t, n.ip(hostB), 0)
			ua.send(view(t, b, o.addr()), "a")
			publicA := o.recv().src
			ub.send(view(t, b, o.addr()), "b")
			publicB := o.recv().src

			ua.send(view(t, b, publicB), "hairpin")
			if !on {
				// Dropped as it reaches the box; once counted it cannot
				// arrive, and the next packet for B shows it did not.
				eventually(t, 3*time.Second, func() bool { return b.Stats().HairpinDropped == 1 }, "the hairpinned packet was not dropped: %+v", b.Stats())
				o.send(publicB, "end")
				if got := ub.recvUpTo("end"); len(got) != 0 {
					t.Errorf("hairpin off: B got %v", got)
				}
				return
			}
			got := ub.recv()
			if got.msg != "hairpin" || got.src != view(t, b, publicA) {
				t.Errorf("hairpin on: B got %q from %v, want it from A's public endpoint's view %v", got.msg, got.src, view(t, b, publicA))
			}
			if s := b.Stats(); s.Hairpinned != 1 {
				t.Errorf("Stats().Hairpinned = %d, want 1", s.Hairpinned)
			}
		})
	}
}

// TestRebind: after Rebind the inside host's packets leave from a new
// public port, and the old one no longer leads inside.
func TestRebind(t *testing.T) {
	n := newTestNet()
	b := newBox(t, n, FullCone.Config())
	o := listenUDP(t, n.ip(hostO1), 0)
	u := listenUDP(t, n.ip(hostA), 0)
	v := view(t, b, o.addr())
	u.send(v, "before")
	old := o.recv().src
	if err := b.Rebind(); err != nil {
		t.Fatal(err)
	}
	u.send(v, "after")
	moved := o.recv().src
	if moved == old || moved.Addr() != b.Public() {
		t.Fatalf("after Rebind the packet came from %v (before: %v)", moved, old)
	}
	o.send(old, "to the old port")
	o.send(moved, "end")
	if got := u.recvUpTo("end"); len(got) != 0 {
		t.Errorf("the old public port %v still leads inside: %v", old, got)
	}
}

// TestStrangerOnView: only inside hosts may use the view sockets.
func TestStrangerOnView(t *testing.T) {
	n := newTestNet()
	b := newBox(t, n, FullCone.Config())
	o := listenUDP(t, n.ip(hostO1), 0)
	v := view(t, b, o.addr())
	stranger := listenUDP(t, n.ip(hostOutside), 0)
	stranger.send(v, "stranger")
	listenUDP(t, n.ip(hostA), 0).send(v, "end")
	if d := o.recv(); d.msg != "end" {
		t.Fatalf("the outside got %q from %v through the view; want only the inside host's", d.msg, d.src)
	}
	if s := b.Stats(); s.Stranger != 1 {
		t.Errorf("Stats().Stranger = %d, want 1", s.Stranger)
	}
}
