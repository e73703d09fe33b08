package dialog

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"sipanchor/relay"
)

// A call ended (API teardown, lifetime) while it is being moved: finish
// reads the branch a move writes. Under -race this failed while terminate
// ran finish without the dialog's lock.
func TestTerminateRacesMove(t *testing.T) {
	for range 20 {
		m, e := newTest(t, EngageAlways)
		d := confirmed(t, m, e)
		mv, err := m.BeginMove(ctx, d, nil)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { m.Terminate(d, "teardown") })
		wg.Go(func() { m.FinishMove(ctx, d, mv, true, []byte("A2"), []byte("B2")) })
		wg.Wait()
		if m.Count() != 0 {
			t.Fatalf("%d dialogs left", m.Count())
		}
	}
}

// The ender is installed after dialogs are restored and their watchers
// run; a media timeout at that moment must not race SetEnder.
func TestSetEnderWhileWatching(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	d := confirmed(t, m, e)
	var wg sync.WaitGroup
	wg.Go(func() { e.Session("b1").Timeout() })
	wg.Go(func() { m.SetEnder(func(context.Context, Ending) {}) })
	wg.Wait()
	eventually(t, 2*time.Second, func() bool { return m.Count() == 0 }, "the timed-out dialog %s was not ended", d.callID)
}

// An UPDATE in an early dialog concerns the branch whose 18x created it,
// found by the callee's tag; its 2xx answers on that branch too.
func TestEarlyUpdateUsesItsBranch(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	d := begin(m, "A1")
	d.OfferBranch(ctx, "b1", BranchTarget{}, []byte("A1"))
	d.OfferBranch(ctx, "b2", BranchTarget{}, []byte("A1"))
	src := netip.MustParseAddrPort("127.0.0.3:5060")
	d.OnInitialResponse(ctx, InitialResponse{Branch: "b2", Code: 183, ToTag: "t2", Source: src, SDP: []byte("B2")})
	e.Calls()
	d.Request(ctx, relay.Caller, "t2", "UPDATE", 2, []byte("A2"))
	d.Response(ctx, "UPDATE", 2, 200, []byte("B3"))
	want(t, e, "offer caller b2 A2", "answer callee b2 B3")
	// A PRACK without SDP changes nothing.
	d.Request(ctx, relay.Caller, "t2", "PRACK", 3, nil)
	d.Response(ctx, "PRACK", 3, 200, nil)
	want(t, e)
	if len(d.pending) != 0 {
		t.Errorf("pending exchanges left: %v", d.pending)
	}
}

// Late offer in a reliable 18x: the PRACK answers it on the same branch,
// and the 2xx repeating the offer leaves nothing waiting for the ACK.
func TestOfferInReliable18xAnsweredByPrack(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	d := begin(m, "")
	src := netip.MustParseAddrPort("127.0.0.3:5060")
	d.OnInitialResponse(ctx, InitialResponse{Branch: "b1", Code: 183, ToTag: "t1", Source: src, SDP: []byte("B1")})
	d.Request(ctx, relay.Caller, "t1", "PRACK", 2, []byte("A1"))
	d.OnInitialResponse(ctx, InitialResponse{Branch: "b1", Code: 200, ToTag: "t1", Source: src, SDP: []byte("B1"), Callee: Party{Tag: "t1"}})
	want(t, e, "offer callee b1 B1", "answer caller b1 A1", "offer callee b1 B1")
	if len(d.pending) != 0 {
		t.Errorf("pending exchanges left after the 2xx: %v", d.pending)
	}
	if string(d.accepted[0]) != "A1" || string(d.accepted[1]) != "B1" {
		t.Errorf("accepted %q", d.accepted)
	}
}
