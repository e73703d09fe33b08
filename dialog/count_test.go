package dialog

import (
	"net/netip"
	"testing"
)

// TestCountFrom: live dialogs are counted by the caller's source IP (any
// port, IPv4-mapped or not) until they end.
func TestCountFrom(t *testing.T) {
	m, _ := newTest(t, EngageNever)
	a := netip.MustParseAddr("127.0.0.2")
	d1 := m.Begin(InviteInfo{CallID: "c1", FromTag: "f", Source: netip.MustParseAddrPort("127.0.0.2:5060")})
	m.Begin(InviteInfo{CallID: "c2", FromTag: "f", Source: netip.MustParseAddrPort("[::ffff:127.0.0.2]:5070")})
	m.Begin(InviteInfo{CallID: "c1", FromTag: "f", Source: netip.MustParseAddrPort("127.0.0.2:5060")}) // retransmission
	m.Begin(InviteInfo{CallID: "c3", FromTag: "f", Source: netip.MustParseAddrPort("127.0.0.3:5060")})
	if n := m.CountFrom(a); n != 2 {
		t.Errorf("CountFrom(%s) = %d, want 2", a, n)
	}
	if n := m.Count(); n != 3 {
		t.Errorf("Count = %d, want 3", n)
	}
	m.Terminate(d1, "test")
	if n := m.CountFrom(a); n != 1 {
		t.Errorf("after one ended: CountFrom = %d, want 1", n)
	}
}
