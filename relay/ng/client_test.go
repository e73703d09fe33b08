package ng

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
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

// FuzzClientReply feeds reply datagrams to the client as rtpengine would
// send them: matched to the command waiting for the cookie, then read as
// an offer's reply and as a query's. Seeds are rtpengine 10.5's own
// replies. Properties: an unreadable datagram is an ErrBencode error and
// reaches no command; an offer's reply is accepted, with its SDP, exactly
// when it says "ok" and carries one, and a refused reply leaves the call
// placed nowhere; a query's counters are what the reply says, or zero
// where it says something no counter can be (never a wrapped number).
func FuzzClientReply(f *testing.F) {
	replies, err := filepath.Glob("../../testdata/ng/rtpengine-10.5/*.reply")
	if err != nil || len(replies) == 0 {
		f.Fatalf("no golden replies: %v", err)
	}
	for _, name := range replies {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		_, body, _ := bytes.Cut(b, []byte(" "))
		f.Add(body)
	}
	f.Add([]byte("d6:result2:oke"))
	f.Add([]byte("d6:result2:ok3:sdpi1ee"))
	c, err := NewClient(ClientConfig{Sets: []SetConfig{{ID: 0, Nodes: []string{"udp:127.0.0.1:9"}}}, ProbeEvery: time.Hour, PollEvery: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	node := c.sets[0].nodes[0]
	k := relay.SessionKey{CallID: "c", FromTag: "ft", ToTag: "tt"}
	f.Fuzz(func(t *testing.T, body []byte) {
		ch := make(chan map[string]any, 1)
		c.mu.Lock()
		c.pending["fz"] = ch
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.pending, "fz")
			delete(c.bound, callKey(k))
			delete(c.sessions, callKey(k))
			c.mu.Unlock()
		}()
		if err := c.deliver(append([]byte("fz "), body...)); err != nil {
			c.mu.Lock()
			waiting := c.pending["fz"] == ch
			c.mu.Unlock()
			if !errors.Is(err, ErrBencode) || len(ch) != 0 || !waiting {
				t.Fatalf("unreadable reply: err %v, delivered %v, command still waiting %v", err, len(ch) != 0, waiting)
			}
			return
		}
		var rep map[string]any
		select {
		case rep = <-ch:
		default:
			t.Fatal("a readable reply did not reach its command")
		}
		checkOfferReply(t, c, node, k, rep)
		checkQueryReply(t, k, rep)
	})
}

func checkOfferReply(t *testing.T, c *Client, n *Node, k relay.SessionKey, rep map[string]any) {
	t.Helper()
	out, err := c.reply(&relay.Request{Key: k, From: relay.Caller, SDP: []byte("v=0\r\n")}, n, callKey(k), rep)
	sdp, _ := rep["sdp"].(string)
	ok := rep["result"] == "ok" && sdp != ""
	c.mu.Lock()
	bound, s := c.bound[callKey(k)], c.sessions[callKey(k)]
	c.mu.Unlock()
	if ok && (err != nil || string(out.SDP) != sdp || bound != n || out.Session != relay.Session(s)) {
		t.Fatalf("good offer reply %v: %v, %+v, bound to %v", rep, err, out, bound)
	}
	if !ok && (err == nil || bound != nil || s != nil) {
		t.Fatalf("offer reply %v accepted (err %v), or the call left placed on %v", rep, err, bound)
	}
}

func checkQueryReply(t *testing.T, k relay.SessionKey, rep map[string]any) {
	t.Helper()
	st := statsOf(k, rep)
	for _, ss := range st.Streams {
		for side, tag := range []string{k.FromTag, k.ToTag} {
			for i, e := range [][2]relay.EndpointStats{{ss.Caller, ss.CallerRTCP}, {ss.Callee, ss.CalleeRTCP}}[side] {
				sm := dig(rep, "tags", tag, "medias", 0, "streams", i)
				if want := count(dig(sm, "local port"), 65535); e.Port != int(want) {
					t.Fatalf("%s stream %d: port %d, the reply says %v", tag, i, e.Port, dig(sm, "local port"))
				}
				if want := count(dig(sm, "stats", "packets"), math.MaxInt64); e.PacketsIn != want {
					t.Fatalf("%s stream %d: %d packets, the reply says %v", tag, i, e.PacketsIn, dig(sm, "stats", "packets"))
				}
				if want := count(dig(sm, "stats", "bytes"), math.MaxInt64); e.BytesIn != want {
					t.Fatalf("%s stream %d: %d bytes, the reply says %v", tag, i, e.BytesIn, dig(sm, "stats", "bytes"))
				}
				if e.Latched == "" {
					continue
				}
				ap, err := netip.ParseAddrPort(e.Latched)
				if err != nil || uint64(ap.Port()) != count(dig(sm, "endpoint", "port"), 65535) {
					t.Fatalf("%s stream %d: latched %q, the reply says port %v", tag, i, e.Latched, dig(sm, "endpoint", "port"))
				}
			}
		}
	}
}

// dig walks a decoded bencode value by dictionary keys and list indexes;
// nil where the path leads nowhere.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			d, _ := v.(map[string]any)
			v = d[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}
