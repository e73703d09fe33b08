package media

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func TestParseTelephoneEvent(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    telephoneEvent
		ok      bool
	}{
		// RFC 4733 §2.3: event | E R volume(6) | duration(16).
		{"digit 5 start", []byte{5, 10, 0x00, 0xa0}, telephoneEvent{event: 5, volume: 10, duration: 160}, true},
		{"end bit", []byte{11, 0x80 | 7, 0x02, 0x80}, telephoneEvent{event: 11, end: true, volume: 7, duration: 640}, true},
		{"reserved bit ignored", []byte{1, 0x40 | 0x3f, 0xff, 0xff}, telephoneEvent{event: 1, volume: 63, duration: 65535}, true},
		{"longer payload: first event", []byte{2, 0, 0, 1, 9, 9, 9, 9}, telephoneEvent{event: 2, duration: 1}, true},
		{"short", []byte{1, 0, 0}, telephoneEvent{}, false},
		{"empty", nil, telephoneEvent{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseTelephoneEvent(tt.payload)
			if ok != tt.ok || got != tt.want {
				t.Errorf("got %+v %v, want %+v %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRTPPayload(t *testing.T) {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, CSRC: []uint32{1, 2}}, Payload: []byte{1, 2, 3, 4}}
	if err := p.SetExtension(1, []byte{0xaa, 0xbb}); err != nil {
		t.Fatal(err)
	}
	p.Header.Padding, p.Header.PaddingSize = true, 3
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := rtpPayload(b); !ok || string(got) != "\x01\x02\x03\x04" {
		t.Errorf("payload %x %v, want 01020304 past CSRCs and extension, before padding", got, ok)
	}
	for _, bad := range [][]byte{
		b[:13], // cut in the CSRC list
		{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}, // extension longer than the packet
		{0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 9}, // padding longer than the payload
	} {
		if got, ok := rtpPayload(bad); ok {
			t.Errorf("%x: payload %x, want none", bad, got)
		}
	}
}

func TestEventDigit(t *testing.T) {
	var got strings.Builder
	for ev := range 20 {
		if d, ok := eventDigit(uint8(ev)); ok {
			got.WriteByte(d)
		}
	}
	if got.String() != "0123456789*#ABCD" {
		t.Errorf("digits %q", got.String())
	}
}

// dtmfLog counts an event once per (SSRC, timestamp), whatever its packets.
func TestDTMFLog(t *testing.T) {
	ev := func(e uint8, end bool, d uint16) telephoneEvent {
		return telephoneEvent{event: e, end: end, duration: d}
	}
	var l dtmfLog
	l.add(1, 1000, ev(1, false, 160))
	l.add(1, 1000, ev(1, false, 320))
	l.add(1, 1000, ev(1, true, 480))
	l.add(1, 1000, ev(1, true, 480)) // retransmitted end
	l.add(1, 2000, ev(1, true, 480)) // same digit again: its start lost, its end seen
	l.add(1, 1000, ev(1, true, 480)) // a late retransmission of the first
	l.add(1, 3000, ev(16, false, 160))
	l.add(1, 4000, ev(12, false, 0xffff))
	l.add(1, 4000+0xffff, ev(12, false, 100)) // §2.5.1.3: the long event's next segment
	l.add(2, 4000+0xffff, ev(15, true, 100))  // another source
	if l.String() != "11AD" {
		t.Errorf("digits %q, want \"11AD\"", l.String())
	}
}

func TestDTMFLogKeepsTheLast64(t *testing.T) {
	var l dtmfLog
	var want strings.Builder
	for i := range 100 {
		e := uint8(i % 16)
		l.add(7, uint32(i)*1000, telephoneEvent{event: e, end: true, duration: 400})
		if i >= 36 {
			d, _ := eventDigit(e)
			want.WriteByte(d)
		}
	}
	if l.String() != want.String() {
		t.Errorf("digits %q, want the last 64 %q", l.String(), want.String())
	}
}

// TestDTMFIsNotJitter: an event's packets all carry its start timestamp
// (RFC 4733 §2.3.1) while they arrive 50 ms apart; that is not lateness,
// so they stay out of the A.8 jitter, unless nobody said they are events.
func TestDTMFIsNotJitter(t *testing.T) {
	feed := func(s *rtpStats) float64 {
		now := time.Unix(1000, 0)
		seq, ts := uint16(1), uint32(0)
		pkt := func(pt uint8, payload []byte) {
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: 3}, Payload: payload}
			b, _ := p.Marshal()
			s.update(b, now)
			seq++
		}
		for range 4 {
			for range 10 {
				pkt(0, make([]byte, 160))
				ts += 160
				now = now.Add(20 * time.Millisecond)
			}
			for i := range 6 { // 300 ms of a digit: its packets 50 ms apart
				pkt(101, eventPayload(5, i >= 3, 10, uint16(i+1)*400))
				now = now.Add(50 * time.Millisecond)
			}
			ts += 2400
		}
		_, _, j := s.snapshot()
		return j
	}
	var events, unknown rtpStats
	events.setClockRate(8000)
	events.setEvents(ptSetOf(101))
	unknown.setClockRate(8000)
	if j := feed(&events); j > 0.5 {
		t.Errorf("jitter %.2f ms with DTMF, want ~0", j)
	}
	if j := feed(&unknown); j < 5 {
		t.Errorf("jitter %.2f ms when PT 101 is not known to be events: the test no longer shows anything", j)
	}
	if got := events.dtmf.String(); got != "5555" {
		t.Errorf("digits %q", got)
	}
}

func TestPTSet(t *testing.T) {
	s := ptSetOf(0, 8, 63, 64, 101, 127)
	s.add(8)
	got := s.list()
	if len(got) != 6 || got[0] != 0 || got[2] != 63 || got[3] != 64 || got[5] != 127 {
		t.Errorf("list %v", got)
	}
	if !s.has(101) || s.has(100) || (ptSet{}).list() != nil {
		t.Error("has or empty list wrong")
	}
}

func TestParseSDPTelephoneEvents(t *testing.T) {
	tests := []struct{ name, media, want string }{
		{"pcmu and events", "m=audio 1000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n", "[101]"},
		{"two rates", "m=audio 1000 RTP/AVP 111 0 101 110\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:101 TELEPHONE-EVENT/8000\r\n", "[101 110]"},
		{"rtpmap of a format not offered", "m=audio 1000 RTP/AVP 0\r\na=rtpmap:101 telephone-event/8000\r\n", "[]"},
		{"none", "m=audio 1000 RTP/AVP 0 8\r\n", "[]"},
		{"not a payload type", "m=audio 1000 RTP/AVP 0 300\r\na=rtpmap:300 telephone-event/8000\r\n", "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ParseSDP([]byte(sdpHead + "c=IN IP4 192.0.2.1\r\nt=0 0\r\n" + tt.media))
			if err != nil {
				t.Fatal(err)
			}
			if got := fmtPTs(info.Streams[0].TelephoneEvents); got != tt.want {
				t.Errorf("telephone events %s, want %s", got, tt.want)
			}
		})
	}
}

func fmtPTs(l []uint8) string {
	s := make([]string, len(l))
	for i, pt := range l {
		s[i] = strconv.Itoa(int(pt))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// FuzzTelephoneEvent feeds any datagram through the telephone-event path
// of the reader (header walk, RFC 4733 decode, digit log): nothing panics,
// and the log stays within its bound.
func FuzzTelephoneEvent(f *testing.F) {
	seed := func(payload []byte, ext bool, pad uint8, csrc int) {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: 7, Timestamp: 800, SSRC: 1}, Payload: payload}
		p.CSRC = make([]uint32, csrc)
		if ext {
			_ = p.SetExtension(1, []byte{1, 2, 3})
		}
		p.Header.Padding, p.Header.PaddingSize = pad > 0, pad
		b, _ := p.Marshal()
		f.Add(b)
	}
	seed(eventPayload(1, false, 10, 160), false, 0, 0)
	seed(eventPayload(11, true, 10, 640), true, 4, 2)
	seed(eventPayload(15, true, 63, 0xffff), false, 0, 15)
	seed(nil, false, 0, 0)
	f.Add([]byte{0xbf, 101, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1})
	f.Add([]byte{0x90, 101, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s rtpStats
		s.setEvents(ptSetOf(101))
		s.update(b, time.Unix(0, 0))
		s.update(b, time.Unix(1, 0))
		if payload, ok := rtpPayload(b); ok {
			if len(payload) > len(b)-12 {
				t.Fatalf("payload of %d bytes in a %d-byte packet", len(payload), len(b))
			}
			if ev, ok := parseTelephoneEvent(payload); ok && ev.volume > 63 {
				t.Fatalf("volume %d", ev.volume)
			}
		}
		if d := s.dtmf.String(); len(d) > 1 {
			t.Fatalf("one event gave digits %q", d)
		}
	})
}

// The reader's per-packet work allocates nothing, DTMF or not.
func TestStatsUpdateDoesNotAllocate(t *testing.T) {
	var s rtpStats
	s.setClockRate(8000)
	s.setEvents(ptSetOf(101))
	audio := rtpPacket(t, 1, 'a')
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: 2, SSRC: 0x1234}, Payload: eventPayload(5, false, 10, 160)}
	event, _ := p.Marshal()
	now := time.Now()
	for name, b := range map[string][]byte{"audio": audio, "event": event} {
		if n := testing.AllocsPerRun(100, func() { s.update(b, now) }); n != 0 {
			t.Errorf("%s packet: %v allocations", name, n)
		}
	}
}
