package dialog

import (
	"testing"

	"sipanchor/relay"
)

// TestResent2xxGetsTheFirstBody: a copy of the last 2xx to an INVITE
// (initial or re-INVITE), resent because the ACK is late, gets the body
// the first copy was relayed with and its sender's CSeq, without a new
// exchange with the relay; another fork's 2xx is not taken for it.
func TestResent2xxGetsTheFirstBody(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	d := begin(m, "A1")
	d.OfferBranch(ctx, "b1", []byte("A1"))
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
