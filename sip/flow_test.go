package sip

import (
	"net/netip"
	"testing"
	"time"
)

func TestFlowsLearnLookupExpire(t *testing.T) {
	f := newFlows()
	l1, l2 := &listener{transport: "udp"}, &listener{transport: "udp"}
	a := netip.MustParseAddrPort("203.0.113.7:40000")
	now := time.Now()
	f.learn("udp", a, l1, now)
	if got := f.lookup("udp", a); got != l1 {
		t.Fatalf("lookup = %p, want the listener it came in on", got)
	}
	if f.lookup("tcp", a) != nil || f.lookup("udp", netip.MustParseAddrPort("203.0.113.7:40001")) != nil {
		t.Error("a flow is per transport and port")
	}
	f.learn("udp", netip.MustParseAddrPort("[::ffff:203.0.113.7]:40000"), l2, now) // a v4-mapped source is the same flow
	if got := f.lookup("udp", a); got != l2 {
		t.Error("the flow did not move to the listener it came in on last")
	}
	f.expire(now.Add(flowIdle + time.Second))
	if f.lookup("udp", a) != nil {
		t.Error("an idle flow was kept past flowIdle")
	}
}

func TestFlowsBounded(t *testing.T) {
	f := newFlows()
	l := &listener{transport: "udp"}
	now := time.Now()
	for i := range maxFlows + 1000 {
		f.learn("udp", netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 5060), l, now)
	}
	n := 0
	for i := range f.shards {
		n += len(f.shards[i].m)
	}
	if n > maxFlows {
		t.Errorf("%d flows kept, bound %d", n, maxFlows)
	}
}

// BenchmarkFlowsLearnParallel: every datagram read learns its flow.
func BenchmarkFlowsLearnParallel(b *testing.B) {
	f := newFlows()
	l := &listener{transport: "udp"}
	now := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			f.learn("udp", netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5060), l, now)
		}
	})
}
