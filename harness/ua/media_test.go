package ua

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// callToRaw places a call to a SIPp UAS whose SDP sends RTP to a raw
// socket of the test, and returns the call and that socket.
func callToRaw(t *testing.T, sippIP, uaIP string, f Faults) (*sippRun, *Call, *rawPeer) {
	t.Helper()
	media := newRawPeer(t, "127.0.64.9")
	s, u, target := sippCallee(t, sippIP, uaIP, Config{Faults: f}, "-sf", scenario("ua_uas_media.xml"),
		"-key", "rtpip", media.addr().Addr().String(), "-key", "rtpport", strconv.Itoa(int(media.addr().Port())))
	c, err := u.Call(ctxFor(t, 10*time.Second), target)
	if err != nil {
		t.Fatalf("call: %v\n%s", err, s.messages(t))
	}
	if c.RemoteMedia() != media.addr() {
		t.Fatalf("remote media %v, want %v", c.RemoteMedia(), media.addr())
	}
	return s, c, media
}

// readRTP reads the next RTP packet at p.
func readRTP(t *testing.T, p *rawPeer) (*rtp.Packet, netip.AddrPort) {
	t.Helper()
	b, src, ok := p.readRaw(2 * time.Second)
	if !ok {
		t.Fatal("no RTP within 2s")
	}
	var pkt rtp.Packet
	if err := pkt.Unmarshal(b); err != nil {
		t.Fatalf("not RTP: %v", err)
	}
	return &pkt, src
}

// TestAsymmetricRTP: RTP leaves from the socket the SDP names (symmetric
// RTP, RFC 4961); with Faults.AsymmetricRTP from another port.
func TestAsymmetricRTP(t *testing.T) {
	for _, asym := range []bool{false, true} {
		t.Run(strconv.FormatBool(asym), func(t *testing.T) {
			s, c, media := callToRaw(t, "127.0.64.1", "127.0.64.2", Faults{AsymmetricRTP: asym})
			if err := c.StartMedia(20 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
			pkt, src := readRTP(t, media)
			if pkt.PayloadType != 0 || len(pkt.Payload) != 160 {
				t.Errorf("packet PT %d, %d bytes: want PCMU, 160 bytes", pkt.PayloadType, len(pkt.Payload))
			}
			if (src != c.LocalMedia()) != asym || src != c.RTPSource() {
				t.Errorf("asymmetric=%v: RTP from %v; SDP names %v, RTPSource %v", asym, src, c.LocalMedia(), c.RTPSource())
			}
			if err := c.Hangup(ctxFor(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			s.wait(t)
		})
	}
}

// TestSendDTMF: each digit is an RFC 4733 event: a start packet with the
// marker bit, continuations, three end packets with E set, all with one
// timestamp; sent back to the UA, the events read as the same digits.
func TestSendDTMF(t *testing.T) {
	s, c, media := callToRaw(t, "127.0.64.3", "127.0.64.4", Faults{})
	ctx := ctxFor(t, 10*time.Second)
	sent := make(chan error, 1)
	go func() { sent <- c.SendDTMF(ctx, "1#") }()
	var events [][]*rtp.Packet
	for len(events) < 2 || len(events[len(events)-1]) < 6 {
		pkt, _ := readRTP(t, media)
		media.c.WriteToUDPAddrPort(must(pkt.Marshal()), c.LocalMedia()) // echo
		if len(events) == 0 || events[len(events)-1][0].Timestamp != pkt.Timestamp {
			events = append(events, nil)
		}
		events[len(events)-1] = append(events[len(events)-1], pkt)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint8{1, 11} {
		ev := events[i]
		for j, p := range ev {
			e, err := parseTelephoneEvent(p.Payload)
			if err != nil || p.PayloadType != ptEvent || e.Event != want || p.Marker != (j == 0) || e.End != (j >= 3) {
				t.Errorf("digit %d packet %d: PT %d marker %v event %+v (%v)", i, j, p.PayloadType, p.Marker, e, err)
			}
			if j > 0 && p.SequenceNumber != ev[j-1].SequenceNumber+1 {
				t.Errorf("digit %d packet %d: sequence %d after %d", i, j, p.SequenceNumber, ev[j-1].SequenceNumber)
			}
		}
	}
	eventually(t, 2*time.Second, func() bool { return c.Received().Digits == "1#" }, "digits received back: %v", lazy(func() any { return c.Received().Digits }))
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
