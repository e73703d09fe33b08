package dialog

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sipanchor/relay"
	"sipanchor/relay/relaytest"
)

var ctx = context.Background()

func newTest(t *testing.T, engage Engage) (*Manager, *relaytest.Engine) {
	t.Helper()
	e := relaytest.New()
	return NewManager(e, Config{Engage: engage, Caller: relay.DefaultLegFlags(), Callee: relay.DefaultLegFlags()}), e
}

func begin(m *Manager, sdp string) *Dialog {
	return m.Begin(InviteInfo{CallID: "c1", FromTag: "ft", FromURI: "<sip:a@x>", ToURI: "<sip:b@x>",
		Contact: "sip:a@192.168.1.5;alias=127.0.0.2~5060~udp", CSeq: 1, SDP: []byte(sdp), Source: netip.MustParseAddrPort("127.0.0.2:5060")})
}

// ops renders recorded calls as "op leg branch sdp" lines.
func ops(e *relaytest.Engine) []string {
	var out []string
	for _, c := range e.Calls() {
		out = append(out, strings.TrimSpace(strings.Join([]string{c.Op, c.From.String(), c.Key.ViaBranch, c.SDP}, " ")))
	}
	return out
}

func want(t *testing.T, e *relaytest.Engine, w ...string) {
	t.Helper()
	if got := ops(e); !slices.Equal(got, w) {
		t.Errorf("engine calls:\n  got  %q\n  want %q", got, w)
	}
}

// confirmed sets up a dialog answered on branch b1 with offer "A1" / answer "B1".
func confirmed(t *testing.T, m *Manager, e *relaytest.Engine) *Dialog {
	t.Helper()
	d := begin(m, "A1")
	if _, err := d.offerBranch(ctx, "b1", BranchTarget{}, []byte("A1")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.branchResponse(ctx, "b1", 200, "tt", netip.MustParseAddrPort("127.0.0.3:5060"), []byte("B1")); err != nil {
		t.Fatal(err)
	}
	d.confirm(ctx, "b1", Party{URI: "<sip:b@x>", Tag: "tt", Contact: "sip:b@127.0.0.3"}, nil, []byte("A1"), []byte("B1"))
	e.Calls()
	return d
}

func TestInitialInviteOffersPerBranchAndFreesLosers(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	d := begin(m, "A1")
	for _, b := range []string{"b1", "b2"} {
		out, err := d.offerBranch(ctx, b, BranchTarget{}, []byte("A1"))
		if err != nil || string(out) != "offer:A1" {
			t.Fatalf("branch %s: %q %v", b, out, err)
		}
	}
	out, _ := d.branchResponse(ctx, "b2", 183, "t2", netip.AddrPort{}, []byte("B2"))
	if string(out) != "answer:B2" {
		t.Errorf("183 body %q", out)
	}
	d.branchResponse(ctx, "b1", 200, "t1", netip.AddrPort{}, []byte("B1"))
	d.confirm(ctx, "b1", Party{Tag: "t1"}, nil, []byte("A1"), []byte("B1"))
	want(t, e, "offer caller b1 A1", "offer caller b2 A1", "answer callee b2 B2", "answer callee b1 B1", "delete caller b2")
	if d.state != StateConfirmed || d.branch != "b1" {
		t.Errorf("state %v branch %q", d.state, d.branch)
	}
}

func TestFailedBranchAndFailedCall(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	d := begin(m, "A1")
	d.offerBranch(ctx, "b1", BranchTarget{}, []byte("A1"))
	d.branchFailed(ctx, "b1")
	d.branchFailed(ctx, "b1") // a second failure of the same branch: nothing
	d.fail(ctx, "486")
	want(t, e, "offer caller b1 A1", "delete caller b1", "delete caller")
	if m.Count() != 0 {
		t.Errorf("%d dialogs left", m.Count())
	}
}

func TestLateOffer(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	d := begin(m, "")
	if out, _ := d.offerBranch(ctx, "b1", BranchTarget{}, nil); len(out) != 0 {
		t.Errorf("INVITE without SDP got a body %q", out)
	}
	out, _ := d.branchResponse(ctx, "b1", 200, "t1", netip.AddrPort{}, []byte("B1"))
	d.confirm(ctx, "b1", Party{Tag: "t1"}, nil, nil, []byte("B1"))
	ack, _ := d.ack(ctx, relay.Caller, 1, []byte("A1"))
	if string(out) != "offer:B1" || string(ack) != "answer:A1" {
		t.Errorf("200 body %q, ACK body %q", out, ack)
	}
	want(t, e, "offer callee b1 B1", "answer caller b1 A1")
}

func TestReinvites(t *testing.T) {
	tests := []struct {
		name string
		run  func(d *Dialog)
		want []string
	}{
		{"callee re-INVITE", func(d *Dialog) {
			d.request(ctx, relay.Callee, "", "INVITE", 101, []byte("B2"))
			d.response(ctx, "INVITE", 101, 200, []byte("A2"))
		}, []string{"offer callee b1 B2", "answer caller b1 A2"}},
		{"rejected re-INVITE restores the offerer", func(d *Dialog) {
			d.request(ctx, relay.Caller, "", "INVITE", 2, []byte("A2"))
			d.response(ctx, "INVITE", 2, 488, nil)
		}, []string{"offer caller b1 A2", "offer caller b1 A1"}},
		{"re-INVITE without SDP", func(d *Dialog) {
			d.request(ctx, relay.Caller, "", "INVITE", 2, nil)
			d.response(ctx, "INVITE", 2, 200, []byte("B2"))
			d.ack(ctx, relay.Caller, 2, []byte("A2"))
		}, []string{"offer callee b1 B2", "answer caller b1 A2"}},
		{"glare: both rejected, both restored", func(d *Dialog) {
			d.request(ctx, relay.Caller, "", "INVITE", 2, []byte("A2"))
			d.request(ctx, relay.Callee, "", "INVITE", 101, []byte("B2"))
			d.response(ctx, "INVITE", 2, 491, nil)
			d.response(ctx, "INVITE", 101, 491, nil)
		}, []string{"offer caller b1 A2", "offer callee b1 B2", "offer caller b1 A1", "offer callee b1 B1"}},
		{"UPDATE in early media style", func(d *Dialog) {
			d.request(ctx, relay.Caller, "", "UPDATE", 3, []byte("A3"))
			d.response(ctx, "UPDATE", 3, 200, []byte("B3"))
		}, []string{"offer caller b1 A3", "answer callee b1 B3"}},
		{"accepted re-INVITE becomes what a later rejection restores", func(d *Dialog) {
			d.request(ctx, relay.Caller, "", "INVITE", 2, []byte("A2"))
			d.response(ctx, "INVITE", 2, 200, []byte("B2"))
			d.request(ctx, relay.Caller, "", "INVITE", 3, []byte("A3"))
			d.response(ctx, "INVITE", 3, 488, nil)
		}, []string{"offer caller b1 A2", "answer callee b1 B2", "offer caller b1 A3", "offer caller b1 A2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, e := newTest(t, EngageAlways)
			d := confirmed(t, m, e)
			tt.run(d)
			want(t, e, tt.want...)
		})
	}
}

func TestByeEndsDialog(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	d := confirmed(t, m, e)
	d.Request(ctx, relay.Callee, "", "BYE", 102, nil)
	want(t, e, "delete caller")
	if m.Count() != 0 || d.state != StateTerminated {
		t.Errorf("after BYE: %d dialogs, state %v", m.Count(), d.state)
	}
}

func TestMediaTimeoutSendsByesThenDeletes(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	var mu sync.Mutex
	var ended []Ending
	m.SetEnder(func(_ context.Context, en Ending) {
		mu.Lock()
		ended = append(ended, en)
		mu.Unlock()
	})
	d := confirmed(t, m, e)
	d.request(ctx, relay.Caller, "", "INFO", 7, nil) // the caller's CSeq moves on
	e.Session("b1").Timeout()
	eventually(t, 2*time.Second, func() bool { return m.Count() == 0 }, "the timed-out dialog is still there")
	m.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(ended) != 1 || ended[0].Reason != "media timeout" {
		t.Fatalf("ender calls %+v", ended)
	}
	en := ended[0]
	if en.Caller.Tag != "ft" || en.Callee.Tag != "tt" || en.Caller.CSeq != 7 || en.Callee.Contact != "sip:b@127.0.0.3" {
		t.Errorf("ending %+v", en)
	}
	want(t, e, "delete caller")
}

func TestEngageDecision(t *testing.T) {
	tests := []struct {
		engage Engage
		nat    bool
		want   bool
	}{
		{EngageAlways, false, true},
		{EngageNever, true, false},
		{EngageNAT, true, true},
		{EngageNAT, false, false},
	}
	for _, tt := range tests {
		m, e := newTest(t, tt.engage)
		d := m.Begin(InviteInfo{CallID: "c", FromTag: "f", SDP: []byte("A"), NAT: tt.nat})
		out, _ := d.offerBranch(ctx, "b", BranchTarget{}, []byte("A"))
		calls := e.Calls()
		if d.engaged != tt.want || (len(calls) > 0) != tt.want || (string(out) == "A") == tt.want {
			t.Errorf("engage %v nat %v: engaged %v, %d engine calls, body %q", tt.engage, tt.nat, d.engaged, len(calls), out)
		}
	}
	if _, err := ParseEngage("sometimes"); err == nil {
		t.Error("ParseEngage accepted nonsense")
	}
}

func TestEngineErrorRefusesOffer(t *testing.T) {
	m, e := newTest(t, EngageAlways)
	e.Fail = &relay.SDPError{Err: errors.New("no m= line")}
	d := begin(m, "junk")
	if _, err := d.offerBranch(ctx, "b1", BranchTarget{}, []byte("junk")); err == nil {
		t.Fatal("no error")
	} else if se := (*relay.SDPError)(nil); !errors.As(err, &se) {
		t.Errorf("error %v is not an SDPError", err)
	}
}

func TestLifetimeSurvivesAMoveAndEndsWithTheCall(t *testing.T) {
	e := relaytest.New()
	m := NewManager(e, Config{Engage: EngageAlways, Lifetime: 300 * time.Millisecond,
		Caller: relay.DefaultLegFlags(), Callee: relay.DefaultLegFlags()})
	var ended []string
	var mu sync.Mutex
	m.SetEnder(func(_ context.Context, en Ending) { mu.Lock(); ended = append(ended, en.Reason); mu.Unlock() })
	d := confirmed(t, m, e)
	mv, err := m.BeginMove(ctx, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.FinishMove(ctx, d, mv, true, []byte("A1"), []byte("B1"))
	eventually(t, 2*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(ended) > 0 },
		"the 300 ms lifetime did not end the call after a move")
	mu.Lock()
	if len(ended) != 1 || ended[0] != "dialog lifetime reached" {
		t.Errorf("after a move, the lifetime ended the call with %v", ended)
	}
	mu.Unlock()

	// A call that ends first leaves no lifetime goroutine behind.
	m2, e2 := newTest(t, EngageNever)
	m2.cfg.Lifetime = time.Hour
	d2 := confirmed(t, m2, e2)
	d2.Request(ctx, relay.Caller, "", "BYE", 9, nil)
	waited := make(chan struct{})
	go func() { m2.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(time.Second):
		t.Error("the lifetime timer outlived its call")
	}
}
