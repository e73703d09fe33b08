package ng

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"sipanchor/media"
	"sipanchor/relay"
)

func TestParseNode(t *testing.T) {
	for _, tc := range []struct {
		in     string
		addr   string
		weight int
		err    bool
	}{
		{"udp:127.0.0.1:2223=3", "127.0.0.1:2223", 3, false},
		{"udp:127.0.0.1:2223", "127.0.0.1:2223", 1, false},
		{"udp:[::1]:2223=0", "[::1]:2223", 0, false},
		{"tcp:127.0.0.1:2223", "", 0, true},
		{"udp:127.0.0.1:2223=-1", "", 0, true},
		{"udp:127.0.0.1", "", 0, true},
	} {
		n, err := ParseNode(tc.in)
		if (err != nil) != tc.err || (err == nil && (n.Addr.String() != tc.addr || n.Weight != tc.weight)) {
			t.Errorf("ParseNode(%q) = %+v, %v", tc.in, n, err)
		}
	}
}

func TestMergeSets(t *testing.T) {
	got := MergeSets([]SetConfig{{ID: 0, Nodes: []string{"udp:127.0.0.1:1"}}},
		[]SetConfig{{ID: 0, Nodes: []string{"udp:127.0.0.1:1", "udp:127.0.0.1:2"}}, {ID: 1, Nodes: []string{"udp:127.0.0.1:3"}}})
	if len(got) != 2 || len(got[0].Nodes) != 2 || got[1].ID != 1 {
		t.Errorf("MergeSets = %+v", got)
	}
}

// The client against sipanchor's own NG server: weights (a weight-0 node
// only when the others are gone) and failover when a node goes silent.
func TestClientWeightsAndFailover(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	var servers []*Server
	var cancels []context.CancelFunc
	var served []chan struct{} // closed when that server's Serve returns
	for i := range 2 {
		rl, err := media.NewRelay(media.Config{PortMin: 43600 + 200*i, PortMax: 43799 + 200*i, Bind: lo, Advertise: lo})
		if err != nil {
			t.Fatal(err)
		}
		defer rl.Close()
		s, err := NewServer(relay.NewBuiltin(rl), ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0")})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Serve(ctx); close(done) }()
		servers = append(servers, s)
		served = append(served, done)
		cancels = append(cancels, cancel)
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	downs := make(chan string, 4)
	c, err := NewClient(ClientConfig{Sets: []SetConfig{{ID: 0, Nodes: []string{
		"udp:" + servers[0].Addr().String() + "=1", "udp:" + servers[1].Addr().String() + "=0"}}},
		Timeout: time.Second, // long enough for a -race server on a loaded machine
		Retries: 1, DisableFor: time.Minute, ProbeEvery: time.Hour, PollEvery: time.Hour,
		OnNode: func(n string, up bool) {
			if !up {
				downs <- n
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	offer := func(id string) (*relay.Reply, error) {
		return c.Offer(context.Background(), &relay.Request{Key: relay.SessionKey{CallID: id, FromTag: "f"}, From: relay.Caller,
			SDP:    []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"),
			Caller: relay.DefaultLegFlags(), Callee: relay.DefaultLegFlags()})
	}
	for i := range 5 {
		if _, err := offer("w" + string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if calls := c.Nodes(); calls[0].Sessions != 5 || calls[1].Sessions != 0 {
		t.Errorf("weight 1 vs 0: %+v", calls)
	}
	cancels[0]() // node 0 goes silent
	<-served[0]  // its socket is closed
	if _, err := offer("after"); err != nil {
		t.Fatalf("offer after node 0 died: %v", err)
	}
	select {
	case n := <-downs:
		if n != "udp:"+servers[0].Addr().String() {
			t.Errorf("node down reported for %s", n)
		}
	default:
		t.Error("no node-down notification")
	}
	if calls := c.Nodes(); calls[1].Sessions != 1 || calls[0].Enabled {
		t.Errorf("after failover: %+v", calls)
	}
}

// TestStrictSourceFlag: [media] latch = "strict" reaches rtpengine as
// strict-source on a symmetric leg's offer and answer; an asymmetric leg
// (it learns nothing) and "learn" ask for none.
func TestStrictSourceFlag(t *testing.T) {
	has := func(d map[string]any) bool {
		fl, _ := d["flags"].([]any)
		for _, f := range fl {
			if f == "strict-source" {
				return true
			}
		}
		return false
	}
	r := &relay.Request{Key: relay.SessionKey{CallID: "c", FromTag: "f"}, From: relay.Caller}
	r.Caller.Symmetric, r.Callee.Symmetric = true, true
	if !has(request("offer", r, true)) {
		t.Error("strict: the offer lacks strict-source")
	}
	r.From = relay.Callee
	if !has(request("answer", r, true)) {
		t.Error("strict: the answer lacks strict-source")
	}
	if has(request("answer", r, false)) {
		t.Error("learn: strict-source asked for")
	}
	r.Callee.Symmetric = false
	if has(request("answer", r, true)) {
		t.Error("an asymmetric leg asked for strict-source")
	}
}
