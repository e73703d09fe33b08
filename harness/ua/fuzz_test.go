package ua

import (
	"net/netip"
	"testing"
)

// FuzzSDPAnswer: whatever offer parses, the UA's answer to it (RFC 3264
// section 6) parses back with the address it named, the answering
// direction and the offered telephone-event payload type.
func FuzzSDPAnswer(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 8 96\r\nc=IN IP6 ::1\r\na=rtpmap:96 PCMU/8000\r\na=inactive\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\nm=audio 4002 RTP/AVP 0\r\n"))
	f.Fuzz(func(t *testing.T, offer []byte) {
		r, err := parseSDP(offer)
		if err != nil {
			return
		}
		local := netip.MustParseAddrPort("192.0.2.1:5004")
		ans, err := localSDP{sessID: 1, version: 2, addr: local, dir: answerDir(r.dir), dtmfPT: r.dtmfPT}.marshal()
		if err != nil {
			t.Fatalf("answer to %q: %v", offer, err)
		}
		back, err := parseSDP(ans)
		if err != nil {
			t.Fatalf("answer %q does not parse: %v", ans, err)
		}
		if back.addr != local || back.dir != answerDir(r.dir) || back.dtmfPT != r.dtmfPT {
			t.Fatalf("answer %q read as %+v; offer %+v", ans, back, r)
		}
	})
}

// FuzzTelephoneEvent: an RFC 4733 payload survives a parse and a marshal
// (the R bit aside, which a receiver ignores).
func FuzzTelephoneEvent(f *testing.F) {
	f.Add([]byte{1, 0x8a, 0x02, 0x80})
	f.Add([]byte{11, 0x0a, 0x00, 0xa0, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseTelephoneEvent(b)
		if err != nil {
			if len(b) >= 4 {
				t.Fatalf("%x: %v", b, err)
			}
			return
		}
		out := e.marshal()
		want := []byte{b[0], b[1] &^ 0x40, b[2], b[3]}
		if string(out) != string(want) {
			t.Fatalf("%x became %x", b[:4], out)
		}
		if eventDigit(e.Event) == '?' != (e.Event > 15) {
			t.Fatalf("event %d read as %q", e.Event, eventDigit(e.Event))
		}
	})
}
