package dialog

import (
	"path/filepath"
	"slices"
	"testing"

	"sipanchor/relay"
	"sipanchor/relay/relaytest"
	"sipanchor/store"
)

// TestResent2xxGetsTheFirstBody: a copy of the last 2xx to an INVITE
// (initial or re-INVITE), resent because the ACK is late, gets the body
// the first copy was relayed with and its sender's CSeq, without a new
// exchange with the relay; another fork's 2xx is not taken for it.
func TestResent2xxGetsTheFirstBody(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	d := begin(m, "A1")
	d.OfferBranch(ctx, "b1", BranchTarget{}, []byte("A1"))
	first, _ := d.OnInitialResponse(ctx, InitialResponse{Branch: "b1", CSeq: 1, Code: 200, ToTag: "t1", SDP: []byte("B1"), Callee: Party{Tag: "t1"}})
	resent := func(name string, cseq uint32, tag, body0 string) {
		t.Helper()
		e.Calls()
		body, orig, ok, err := d.StrayResponse(ctx, cseq, 200, tag, []byte("B?"))
		if err != nil || ok != (body0 != "") || string(body) != body0 || ok && orig != cseq {
			t.Errorf("%s: body %q CSeq %d known %v err %v, want %q", name, body, orig, ok, err, body0)
		}
		want(t, e) // the relay is not asked again
	}
	resent("the INVITE's 2xx", 1, "t1", string(first))
	resent("another fork's 2xx", 1, "t2", "")
	d.Request(ctx, relay.Caller, "t1", "INVITE", 2, []byte("A2"))
	again, _ := d.Response(ctx, "INVITE", 2, 200, []byte("B2"))
	resent("the re-INVITE's 2xx", 2, "t1", string(again))
	resent("a 2xx to no INVITE in progress", 3, "t1", "")
}

// TestCancelAfterRestartEndsWithTheLastFinal: a CANCEL of an INVITE
// whose transaction is gone names the branches to CANCEL once (its own
// Via branch must be the INVITE's) and frees their relay sessions at
// once; the dialog ends, and the SIP layer relays a final response, only
// when the last branch's final response comes.
func TestCancelAfterRestartEndsWithTheLastFinal(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	d := m.Begin(InviteInfo{CallID: "c1", FromTag: "ft", CSeq: 1, SDP: []byte("A1"), Branch: "z9hG4bKcaller"})
	t1, t2 := BranchTarget{Cancel: "CANCEL 1", Dest: "127.0.0.3:5060"}, BranchTarget{Cancel: "CANCEL 2", Dest: "127.0.0.4:5060"}
	d.OfferBranch(ctx, "b1", t1, []byte("A1"))
	d.OfferBranch(ctx, "b2", t2, []byte("A1"))
	e.Calls()
	if to, ok := d.CancelRestored(ctx, "z9hG4bKother"); ok || len(to) > 0 {
		t.Fatalf("CANCEL of another INVITE: %v %v, want 481", to, ok)
	}
	to, ok := d.CancelRestored(ctx, "z9hG4bKcaller")
	if !ok || len(to) != 2 {
		t.Fatalf("CANCEL: %v %v, want both branches", to, ok)
	}
	if to, ok := d.CancelRestored(ctx, "z9hG4bKcaller"); !ok || len(to) > 0 {
		t.Errorf("resent CANCEL: %v %v, want 200 and no second CANCEL", to, ok)
	}
	if got := ops(e); len(got) != 2 || !slices.Contains(got, "delete caller b1") || !slices.Contains(got, "delete caller b2") {
		t.Errorf("engine calls at the CANCEL %q, want both branches deleted", got)
	}
	if to, last, _ := d.StrayFinal(ctx, "b1", 1, 487); to != t1 || last {
		t.Errorf("first 487: %v last %v, want b1's target, not last", to, last)
	}
	if to, last, _ := d.StrayFinal(ctx, "b1", 1, 487); to != (BranchTarget{}) || last {
		t.Errorf("487 resent: %v last %v, want nothing", to, last)
	}
	if to, last, _ := d.StrayFinal(ctx, "b2", 1, 487); to != t2 || !last {
		t.Errorf("last 487: %v last %v, want b2's target, last", to, last)
	}
	if m.Count() != 0 {
		t.Errorf("%d dialogs left after the last 487", m.Count())
	}
}

// TestFinalACKAfterRestart: the ACK of a final response ≥ 300 sent before
// a restart is known by the INVITE's Via branch, whether the old
// process's end of the call reached the store (the call record says) or
// not (the restored early dialog says, and ends); the ACK of a 2xx, with
// a branch of its own, is not taken for it.
func TestFinalACKAfterRestart(t *testing.T) {
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := Config{Engage: EngageAlways, Caller: relay.DefaultLegFlags(), Callee: relay.DefaultLegFlags(), DB: db}
	old := NewManager(relaytest.New(), cfg)
	d := old.Begin(InviteInfo{CallID: "c1", FromTag: "ft", CSeq: 1, SDP: []byte("A1"), Branch: "z9hG4bKinv"})
	d.OfferBranch(ctx, "b1", BranchTarget{Cancel: "CANCEL", Dest: "127.0.0.3:5060"}, []byte("A1"))
	old.Close() // killed while ringing: the early dialog is saved, its end never comes

	m := NewManager(relaytest.New(), cfg)
	defer m.Close()
	if n, err := m.Load(ctx); n != 1 || err != nil {
		t.Fatalf("Load: %d %v, want the early dialog", n, err)
	}
	if m.FinalACK(ctx, "c1", "ft", "tt", "z9hG4bKack2xx") {
		t.Error("an ACK with a branch of its own taken for the ACK of a final response")
	}
	if !m.FinalACK(ctx, "c1", "ft", "tt", "z9hG4bKinv") {
		t.Error("ACK with the INVITE's branch, restored early dialog: not known")
	}
	if m.Count() != 0 {
		t.Errorf("%d dialogs after the ACK of a final response, want the early one ended", m.Count())
	}
	if !m.FinalACK(ctx, "c1", "ft", "tt", "z9hG4bKinv") {
		t.Error("ACK with the INVITE's branch, call ended: not known from its call record")
	}
	if m.FinalACK(ctx, "c1", "ft", "tt", "z9hG4bKack2xx") || m.FinalACK(ctx, "c2", "ft", "tt", "z9hG4bKinv") {
		t.Error("another ACK taken for the ACK of a final response")
	}
}
