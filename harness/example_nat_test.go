package harness_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"sipanchor/harness"
	"sipanchor/harness/nat"
	"sipanchor/harness/ua"
)

// A UA behind each of the four RFC 4787 NAT types registers through
// sipanchor, is called by a UA outside, and media flows both ways through
// the relay, as the relay and both UAs count it.
func TestCallBehindEachNATType(t *testing.T) {
	for _, typ := range []nat.Type{nat.FullCone, nat.RestrictedCone, nat.PortRestrictedCone, nat.Symmetric} {
		t.Run(typ.String(), func(t *testing.T) {
			sbc := harness.Start(t, harness.Options{})
			box := harness.NAT(t, typ)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			alice := newUA(t, ua.Config{User: "alice", Domain: sbc.Domain(), Local: box.Inside(),
				Server: box.View(sbc.Addr("udp")), OnlyFrom: box.ViewPrefix()})
			if _, err := alice.Register(ctx, time.Minute); err != nil {
				t.Fatalf("alice behind %v: register: %v", typ, err)
			}
			sbc.WaitRegistered("alice@" + sbc.Domain())
			bob := newUA(t, ua.Config{User: "bob", Domain: sbc.Domain(), Local: netip.MustParseAddr("127.0.0.1"), Server: sbc.Addr("udp")})

			out, err := bob.Call(ctx, "sip:alice@"+sbc.Domain())
			if err != nil {
				t.Fatalf("bob calls alice behind %v: %v", typ, err)
			}
			in, err := alice.Incoming(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []*ua.Call{out, in} {
				if err := c.StartMedia(20 * time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
			call := sbc.WaitAnswered(harness.Match{From: "bob", To: "alice"})
			call.ExpectTwoWay(harness.MediaExpect{MinPackets: 25, PayloadTypes: []uint8{0}})
			for name, c := range map[string]*ua.Call{"alice": in, "bob": out} {
				if n := c.Received().Packets; n == 0 {
					t.Errorf("%s received no RTP", name)
				}
			}
			if err := out.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			call.WaitEnded()
		})
	}
}

func newUA(t *testing.T, cfg ua.Config) *ua.UA {
	t.Helper()
	u, err := ua.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return u
}
