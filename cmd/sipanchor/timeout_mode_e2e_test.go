package main

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
)

// [media] timeout_mode: "all" ends a call when every side is silent, "any"
// when one side that its SDP says should send is. session_timeout is 1 s,
// so a BYE is due within 1 s of silence plus the sweeper's 1 s tick.

func timeoutModeConfig(mode string) string {
	return "[media]\nsetup_timeout = \"1s\"\nsession_timeout = \"1s\"\ntimeout_mode = \"" + mode + "\"\n"
}

// keepSending sends a 20 ms PCMU packet carrying marker m from r to dst
// every 20 ms, as a talking UA does, until stop or the end of the test.
func keepSending(t *testing.T, r *rtpPeer, dst netip.AddrPort, m byte) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		seq := uint16(20000)
		for {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			seq++
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: uint32(r.port()) + 1}, Payload: make([]byte, 160)}
			p.Payload[0] = m
			b, _ := p.Marshal()
			_, _ = r.conn.WriteToUDPAddrPort(b, dst)
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// byesWithin waits for the BYE to each end, answers them and checks they
// came within limit of since and give reason.
func (c *anchoredCall) byesWithin(t *testing.T, since time.Time, limit time.Duration, reason string) {
	t.Helper()
	byeA := c.alice.recv("BYE", isRequest("BYE")).(*sip.Request)
	c.alice.okTo(byeA)
	byeB := c.bob.recv("BYE", isRequest("BYE")).(*sip.Request)
	c.bob.okTo(byeB)
	if el := time.Since(since); el > limit {
		t.Errorf("BYEs after %v, want within %v", el, limit)
	}
	for _, bye := range []*sip.Request{byeA, byeB} {
		if h := bye.GetHeader("Reason"); h == nil || !strings.Contains(h.Value(), `text="`+reason+`"`) {
			t.Errorf("BYE to %s has Reason %v, want text=%q", bye.Recipient.User, h, reason)
		}
	}
}

// noBYE asserts that neither end gets a BYE for d and the call is still up.
func (c *anchoredCall) noBYE(t *testing.T, p *proxy, d time.Duration) {
	t.Helper()
	c.alice.quiet("BYE", d, isRequest("BYE"))
	for drained := false; !drained; { // bob's messages queued meanwhile
		select {
		case m := <-c.bob.in:
			if isRequest("BYE")(m) {
				t.Fatalf("bob: unexpected BYE:\n%s", m)
			}
		default:
			drained = true
		}
	}
	if n := p.health()["dialogs"]; n != 1 {
		t.Fatalf("%v dialogs after %v, want the call still up", n, d)
	}
}

// Mode any: the callee goes silent while the caller keeps talking (its NAT
// mapping died): both ends get a BYE that says who went silent.
func TestTimeoutModeAnyCalleeSilent(t *testing.T) {
	p := startProxy(t, timeoutModeConfig("any"))
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	silentFrom := time.Now() // the callee's last packet
	keepSending(t, c.aRTP, c.toAlice, 'm')
	c.bRTP.recv('m') // the caller's media still reaches the callee
	c.byesWithin(t, silentFrom, 2500*time.Millisecond, "media timeout: callee silent")
	eventually(t, 2*time.Second, func() bool {
		return len(p.logLines(`status=200 reason="media timeout: callee silent"`)) == 2 &&
			len(p.logLines(`msg="dialog ended" call_id=`+c.dc.callID+` reason="media timeout: callee silent"`)) == 1
	}, "no %s", "both BYEs answered and the call ended, logged with the silent side")
	resp, err := http.Get(p.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "\nsipanchor_media_timeouts_total 1\n") {
		t.Errorf("the timeout is not counted as a media timeout:\n%s", b)
	}
}

// Mode all (the default rule): the caller keeps the call up on its own.
func TestTimeoutModeAllOneWayKeepsCall(t *testing.T) {
	p := startProxy(t, timeoutModeConfig("all"))
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	keepSending(t, c.aRTP, c.toAlice, 'm')
	c.noBYE(t, p, 3*time.Second)
	c.bRTP.recv('m') // still relayed
}

// A held call never times out because of the side that is not to send:
// with sendonly/recvonly the holder's music on hold flows and the held
// side is silent; with inactive nobody sends.
func TestTimeoutModeHoldNoBYE(t *testing.T) {
	for _, mode := range []string{"all", "any"} {
		for _, hold := range []struct{ name, offer, answer string }{
			{"sendonly", "a=sendonly\n", "a=recvonly\n"},
			{"inactive", "a=inactive\n", "a=inactive\n"},
		} {
			t.Run(mode+"/"+hold.name, func(t *testing.T) {
				p := startProxy(t, timeoutModeConfig(mode))
				c := setupAnchoredCall(t, p)
				c.twoWay(t, 'a')
				reinvite(t, c.alice, c.dc, c.bob, sdpWith(c.aRTP.port(), hold.offer), sdpWith(c.bRTP.port(), hold.answer), "")
				if hold.name == "sendonly" {
					keepSending(t, c.aRTP, c.toAlice, 'h')
					c.bRTP.recv('h') // music on hold reaches the held party
				}
				c.noBYE(t, p, 3*time.Second)
			})
		}
	}
}

// Mode any, after hold and resume: the callee is expected to send again,
// and its silence ends the call.
func TestTimeoutModeAnyAfterResume(t *testing.T) {
	p := startProxy(t, timeoutModeConfig("any"))
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	reinvite(t, c.alice, c.dc, c.bob, sdpWith(c.aRTP.port(), "a=sendonly\n"), sdpWith(c.bRTP.port(), "a=recvonly\n"), "")
	keepSending(t, c.aRTP, c.toAlice, 'h')
	c.noBYE(t, p, 2*time.Second) // on hold: the callee's silence is fine
	reinvite(t, c.alice, c.dc, c.bob, sdpWith(c.aRTP.port(), ""), sdpWith(c.bRTP.port(), ""), "")
	c.twoWay(t, 'r')
	silentFrom := time.Now()
	c.byesWithin(t, silentFrom, 2500*time.Millisecond, "media timeout: callee silent")
}
