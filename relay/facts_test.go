package relay

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"sipanchor/media"
)

// A caller whose SDP offers PCMU and telephone-event sends audio and a
// DTMF digit; the engine's Stats say which payload types and which digit
// it sent, and how good its stream was.
func TestBuiltinMediaFacts(t *testing.T) {
	b := newBuiltin(t)
	caller, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	port := strconv.Itoa(caller.LocalAddr().(*net.UDPAddr).Port)
	offer := "v=0\r\no=alice 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n" +
		"m=audio " + port + " RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
	answer := strings.ReplaceAll(strings.ReplaceAll(offer, "127.0.0.2", "127.0.0.3"), "m=audio "+port, "m=audio 5000")
	key := SessionKey{CallID: "c", FromTag: "f", ToTag: "t", ViaBranch: "b"}
	req := func(from Leg, sdp, src string) *Request {
		return &Request{Key: key, From: from, SDP: []byte(sdp), Source: netip.MustParseAddrPort(src),
			Caller: DefaultLegFlags(), Callee: DefaultLegFlags()}
	}
	if _, err := b.Offer(context.Background(), req(Caller, offer, "127.0.0.2:5060")); err != nil {
		t.Fatal(err)
	}
	rep, err := b.Answer(context.Background(), req(Callee, answer, "127.0.0.3:5060"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := media.ParseSDP(rep.SDP) // what the caller is told: where to send
	if err != nil {
		t.Fatal(err)
	}
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(info.Streams[0].Port))

	seq := uint16(1)
	sendRTP := func(pt uint8, ts uint32, payload []byte) {
		t.Helper()
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: 42}, Payload: payload}
		raw, _ := p.Marshal()
		if _, err := caller.WriteToUDPAddrPort(raw, to); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	for i := range 5 {
		sendRTP(0, uint32(i)*160, make([]byte, 160))
	}
	for i, end := range []byte{0, 0, 0x80, 0x80, 0x80} { // digit 4: start, continuation, end x3
		sendRTP(101, 800, []byte{4, end | 10, 0, byte(160 * (i + 1))})
	}

	var got media.EndpointStats
	for deadline := time.Now().Add(2 * time.Second); got.PacketsIn < 10; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the relay took %d of 10 packets", got.PacketsIn)
		}
		st, err := b.Query(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		got = st.Streams[0].Caller
	}
	if !slices.Equal(got.PayloadTypes, []uint8{0, 101}) || got.DTMF != "4" || got.MOS < 4 {
		t.Errorf("caller: payload types %v, DTMF %q, MOS %v; want [0 101], \"4\", about 4.4", got.PayloadTypes, got.DTMF, got.MOS)
	}
	js, _ := json.Marshal(got)
	for _, want := range []string{`"payload_types":[0,101]`, `"dtmf":"4"`, `"mos":4.`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s: %s", want, js)
		}
	}
}
