package media

import (
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// ua sends a numbered RTP stream to one relay port: PCMU audio and RFC 4733
// telephone-event packets share its sequence numbers, SSRC and clock.
type ua struct {
	t     *testing.T
	c     *net.UDPConn
	port  int    // the relay port it sends to
	seq   uint16 // next sequence number
	ts    uint32 // current media timestamp
	start time.Time
	sent  uint64
}

func (u *ua) packet(pt uint8, marker bool, ts uint32, payload []byte) {
	u.t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, Marker: marker, SequenceNumber: u.seq,
		Timestamp: ts, SSRC: 0x5eed}, Payload: payload}
	b, err := p.Marshal()
	if err != nil {
		u.t.Fatal(err)
	}
	send(u.t, u.c, u.port, b)
	u.seq++
	u.sent++
}

// audio sends n PCMU packets whose timestamps follow the wall clock (8 kHz
// since the first packet): a sender without clock drift, so the jitter
// the relay measures is only its own and the loopback's. The clock never
// goes back to before the end of a digit, whose timestamps run ahead of
// it: a digit right after another must not take its timestamp. Every skip-th
// sequence number is left out (lost on the way); 0 sends all.
func (u *ua) audio(n, skip int) {
	u.t.Helper()
	if u.start.IsZero() {
		u.start = time.Now()
	}
	for range n {
		u.ts = max(u.ts, uint32(time.Since(u.start)*8000/time.Second))
		if skip > 0 && int(u.seq)%skip == 0 {
			u.seq++
			continue
		}
		u.packet(0, false, u.ts, make([]byte, 160))
	}
}

// digit sends one RFC 4733 event as UAs do (§2.5.1): a start packet with
// the marker bit, two continuations with a growing duration, and the end
// packet three times (§2.5.1.4), all with the event's start timestamp.
func (u *ua) digit(pt, event uint8) {
	u.t.Helper()
	u.ts += 160
	for i, d := range []uint16{160, 320, 480, 640, 640, 640} {
		end := i >= 3
		u.packet(pt, i == 0, u.ts, eventPayload(event, end, 10, d))
	}
	u.ts += 640
}

func eventPayload(event uint8, end bool, volume uint8, duration uint16) []byte {
	b := []byte{event, volume & 0x3f, byte(duration >> 8), byte(duration)}
	if end {
		b[1] |= 0x80
	}
	return b
}

// dtmfCall sets up a call whose sides' SDP offer PCMU and telephone-event
// on the payload types given for each (none: PCMU only). It returns the
// caller's sender and the session.
func dtmfCall(t *testing.T, callerEvents, calleeEvents []uint8) (*ua, *Session) {
	t.Helper()
	r := newTestRelay(t, 4, nil)
	s, err := r.Open("dtmf")
	if err != nil {
		t.Fatal(err)
	}
	side := func(c *net.UDPConn, events []uint8) *SDPInfo {
		info := sdpOf(c)
		info.Streams[0].Formats = []string{"0"}
		for _, pt := range events {
			info.Streams[0].Formats = append(info.Streams[0].Formats, strconv.Itoa(int(pt)))
		}
		info.Streams[0].TelephoneEvents = events
		return info
	}
	caller, callee := udp(t, "127.0.0.2"), udp(t, "127.0.0.3")
	if _, err := s.Apply(SideA, side(caller, callerEvents), true, false); err != nil {
		t.Fatal(err)
	}
	pa, err := s.Apply(SideB, side(callee, calleeEvents), true, true)
	if err != nil {
		t.Fatal(err)
	}
	return &ua{t: t, c: caller, port: pa[0], seq: 1000}, s
}

// callerStats waits until the relay has taken every packet u sent, then
// returns what it saw of the caller.
func callerStats(t *testing.T, s *Session, u *ua) EndpointStats {
	t.Helper()
	var e EndpointStats
	eventually(t, 2*time.Second, func() bool {
		e = s.Stats().Streams[0].Caller
		return e.PacketsIn == u.sent
	}, "caller stats %+v, want %d packets in", &e, u.sent)
	return e
}

func TestPayloadTypesSeen(t *testing.T) {
	u, s := dtmfCall(t, []uint8{101}, nil)
	u.audio(5, 0)
	u.digit(101, 1)
	u.audio(5, 0)
	e := callerStats(t, s, u)
	if !slices.Equal(e.PayloadTypes, []uint8{0, 101}) {
		t.Errorf("caller payload types %v, want [0 101]", e.PayloadTypes)
	}
	if callee := s.Stats().Streams[0].Callee; callee.PayloadTypes != nil || callee.MOS != 0 || callee.DTMF != "" {
		t.Errorf("callee sent nothing, yet: types %v MOS %v DTMF %q", callee.PayloadTypes, callee.MOS, callee.DTMF)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"payload_types":[0,101]`) || !strings.Contains(string(b), `"dtmf":"1"`) {
		t.Errorf("JSON %s: want payload_types as a list of numbers and dtmf", b)
	}
	var back EndpointStats
	if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back.PayloadTypes, e.PayloadTypes) {
		t.Errorf("JSON round trip: %v %v", back.PayloadTypes, err)
	}
}

func TestDTMFDigitsOncePerEvent(t *testing.T) {
	u, s := dtmfCall(t, []uint8{101}, nil)
	u.audio(3, 0)
	for _, ev := range []uint8{1, 5, 11} { // '1', '5', '#'
		u.digit(101, ev)
		u.audio(2, 0)
	}
	if e := callerStats(t, s, u); e.DTMF != "15#" {
		t.Errorf("caller DTMF %q, want %q", e.DTMF, "15#")
	}
}

// Events on a payload type no SDP declared as telephone-event are not
// decoded: they might be anything. The same call decodes the declared one.
func TestDTMFUndeclaredPayloadType(t *testing.T) {
	u, s := dtmfCall(t, []uint8{101}, nil)
	u.audio(3, 0)
	u.digit(96, 7)
	u.audio(3, 0)
	if e := callerStats(t, s, u); e.DTMF != "" || !slices.Contains(e.PayloadTypes, 96) {
		t.Fatalf("after events on undeclared PT 96: DTMF %q (want none), types %v", e.DTMF, e.PayloadTypes)
	}
	u.digit(101, 9)
	if e := callerStats(t, s, u); e.DTMF != "9" {
		t.Errorf("after an event on declared PT 101: DTMF %q, want \"9\"", e.DTMF)
	}
}

// The side that did not declare telephone-event may still send it on the
// number the other side declared: RFC 3264 §5.1 has the receiver's SDP
// name the payload types it gets.
func TestDTMFOnPeersPayloadType(t *testing.T) {
	u, s := dtmfCall(t, nil, []uint8{100})
	u.digit(100, 10)
	if e := callerStats(t, s, u); e.DTMF != "*" {
		t.Errorf("DTMF %q, want \"*\"", e.DTMF)
	}
}

func TestMOSCleanAndLossy(t *testing.T) {
	u, s := dtmfCall(t, nil, nil)
	u.audio(200, 0)
	clean := callerStats(t, s, u)
	if clean.MOS < 4.35 || clean.MOS > 4.41 {
		t.Errorf("clean stream (lost %d, jitter %.2f ms): MOS %.2f, want about 4.4", clean.Lost, clean.JitterMS, clean.MOS)
	}

	u, s = dtmfCall(t, nil, nil)
	u.audio(200, 10) // every 10th sequence number lost
	lossy := callerStats(t, s, u)
	if lossy.Lost == 0 || lossy.MOS >= 3.6 || lossy.MOS < 3 {
		t.Errorf("10%% loss (lost %d of %d, jitter %.2f ms): MOS %.2f, want 3..3.6", lossy.Lost, lossy.Expected, lossy.JitterMS, lossy.MOS)
	}
}

// A restored session still knows which payload type carries DTMF.
func TestDTMFSurvivesRestore(t *testing.T) {
	u, s := dtmfCall(t, []uint8{101}, nil)
	b, err := json.Marshal(s.State()) // as dialog persistence keeps it
	if err != nil {
		t.Fatal(err)
	}
	var st SessionState
	if err := json.Unmarshal(b, &st); err != nil || !strings.Contains(string(b), `"telephone_events":[101]`) {
		t.Fatalf("state %s: %v", b, err)
	}
	s.r.Close()
	r2, err := NewRelay(s.r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if s, err = r2.Restore("dtmf", st); err != nil {
		t.Fatal(err)
	}
	u.digit(101, 3)
	if e := callerStats(t, s, u); e.DTMF != "3" {
		t.Errorf("after restore: DTMF %q, want \"3\"", e.DTMF)
	}
}
