package ng

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"sipanchor/media"
	"sipanchor/relay"
)

// startNGServer runs sipanchor's own NG server on 127.0.0.1 with media
// ports from portMin, for client tests that need a node that answers.
func startNGServer(t *testing.T, portMin int) *Server {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	rl, err := media.NewRelay(media.Config{PortMin: portMin, PortMax: portMin + 199, Bind: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rl.Close() })
	s, err := NewServer(relay.NewBuiltin(rl), ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func testOffer(c *Client, id string) (*relay.Reply, error) {
	return c.Offer(context.Background(), &relay.Request{Key: relay.SessionKey{CallID: id, FromTag: "f"}, From: relay.Caller,
		SDP:    []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"),
		Caller: relay.DefaultLegFlags(), Callee: relay.DefaultLegFlags()})
}

// TestClientOfferDuringReload: new calls choose the default set while the
// API reloads the sets; run with -race.
func TestClientOfferDuringReload(t *testing.T) {
	s := startNGServer(t, 42600)
	node := "udp:" + s.Addr().String()
	c, err := NewClient(ClientConfig{Sets: []SetConfig{{ID: 0, Nodes: []string{node}}},
		Timeout: time.Second, Retries: 1, ProbeEvery: time.Hour, PollEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	offered := make(chan struct{})
	var offers sync.WaitGroup
	for g := range 8 {
		offers.Go(func() {
			for i := range 25 {
				id := fmt.Sprint("race", g, ".", i)
				if _, err := testOffer(c, id); err != nil {
					errs <- err
					return
				}
				if err := c.Delete(context.Background(), &relay.Request{Key: relay.SessionKey{CallID: id, FromTag: "f"}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	go func() { offers.Wait(); close(offered) }()
	wg.Go(func() {
		for {
			select {
			case <-offered:
				return
			default:
			}
			if _, err := c.Reload([]SetConfig{{ID: 0, Nodes: []string{node}}}); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
