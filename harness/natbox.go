package harness

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"sipanchor/harness/nat"
)

// NATBox is a userspace NAT (package nat) in front of one inside host, for
// one test: no root needed. The UA under test binds Inside() and sends to
// the view addresses View gives it; the world sees it at Public().
type NATBox struct {
	*nat.Box
	t      testing.TB
	inside netip.Addr
}

// NAT starts a NAT box of typ (nat.FullCone, nat.RestrictedCone,
// nat.PortRestrictedCone, nat.Symmetric) with an inside and a public
// address of its own on loopback; edit, if given, changes its config
// (timeouts, port preservation, hairpinning, a broken SIP ALG) before it
// starts. It is closed by t.Cleanup.
func NAT(t testing.TB, typ nat.Type, edit ...func(*nat.Config)) *NATBox {
	t.Helper()
	inside, public := loopbackPair()
	cfg := typ.Config()
	cfg.Inside, cfg.Public = []netip.Addr{inside}, public
	for _, e := range edit {
		e(&cfg)
	}
	b, err := nat.New(cfg)
	if err != nil {
		t.Fatalf("harness: NAT %v: %v", typ, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return &NATBox{Box: b, t: t, inside: cfg.Inside[0]}
}

// Inside is the inside host's address: bind the UA under test to it.
func (n *NATBox) Inside() netip.Addr { return n.inside }

// View is where the inside host reaches outside, through the box (the
// SBC's SIP address, a STUN server...).
func (n *NATBox) View(outside netip.AddrPort) netip.AddrPort {
	n.t.Helper()
	v, err := n.Box.View(outside)
	if err != nil {
		n.t.Fatalf("harness: NAT view of %v: %v", outside, err)
	}
	return v
}

// loopbackNet hands out loopback addresses no other box in this process
// has: 127.A.B.x, with A.B chosen at random once per process (test
// binaries of other packages run beside this one) and x counting up.
var loopbackNet struct {
	mu   sync.Mutex
	base [3]byte
	next int
}

// loopbackPair is a fresh inside and public address.
func loopbackPair() (inside, public netip.Addr) {
	l := &loopbackNet
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next == 0 || l.next > 250 {
		l.base = [3]byte{127, byte(2 + rand.IntN(120)), byte(rand.IntN(256))}
		l.next = 2
	}
	addr := func() netip.Addr {
		a := netip.AddrFrom4([4]byte{l.base[0], l.base[1], l.base[2], byte(l.next)})
		l.next++
		return a
	}
	return addr(), addr()
}
