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

// TestHasSource: a live dialog holds the exact source (IP and port) of its
// caller, and of its callee once it answered (the last branch to answer),
// until it ends.
func TestHasSource(t *testing.T) {
	m, _ := newTest(t, EngageNever)
	caller := netip.MustParseAddrPort("127.0.0.2:40001")
	early := netip.MustParseAddrPort("127.0.0.3:40002")
	callee := netip.MustParseAddrPort("[::ffff:127.0.0.4]:40003")
	d := m.Begin(InviteInfo{CallID: "c1", FromTag: "f", Source: caller})
	ctx := t.Context()
	if _, err := d.OnInitialResponse(ctx, InitialResponse{Branch: "b1", Code: 180, ToTag: "t1", Source: early}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.OnInitialResponse(ctx, InitialResponse{Branch: "b2", Code: 200, ToTag: "t2", Source: callee}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		a    netip.AddrPort
		want bool
	}{
		{caller, true},
		{netip.MustParseAddrPort("127.0.0.2:40009"), false}, // another connection of the caller's IP
		{early, false}, // the branch that did not answer
		{netip.MustParseAddrPort("127.0.0.4:40003"), true},
	} {
		if got := m.HasSource(tc.a); got != tc.want {
			t.Errorf("HasSource(%s) = %v, want %v", tc.a, got, tc.want)
		}
	}
	m.Terminate(d, "test")
	if m.HasSource(caller) || m.HasSource(callee) {
		t.Error("sources still held after the dialog ended")
	}
}
