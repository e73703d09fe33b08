package media

import (
	"encoding/binary"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// telephoneEvent is one named event of RFC 4733 §2.3 (DTMF digits are
// events 0-15, §3.2).
type telephoneEvent struct {
	event    uint8
	end      bool   // E: the last packet(s) of the event
	volume   uint8  // 0..63, the power level in -dBm0
	duration uint16 // since the event began, in RTP timestamp units
}

// parseTelephoneEvent decodes the start of an RTP payload as RFC 4733
// §2.3 lays it out:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	|     event     |E|R| volume    |          duration             |
//
// The reserved R bit is ignored. Bytes after the first four (another
// block) are not looked at: a payload carries the current event first.
func parseTelephoneEvent(p []byte) (telephoneEvent, bool) {
	if len(p) < 4 {
		return telephoneEvent{}, false
	}
	return telephoneEvent{
		event:    p[0],
		end:      p[1]&0x80 != 0,
		volume:   p[1] & 0x3f,
		duration: binary.BigEndian.Uint16(p[2:4]),
	}, true
}

// rtpPayload returns the payload of an RTP packet (RFC 3550 §5.1): past
// the fixed header, the CSRC list and a header extension (§5.3.1), and
// before any padding, whose count is the last byte. false when the
// packet is shorter than what its header announces.
func rtpPayload(b []byte) ([]byte, bool) {
	if len(b) < 12 {
		return nil, false
	}
	n := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 { // X: 16-bit profile, 16-bit length in 32-bit words
		if len(b) < n+4 {
			return nil, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:n+4]))
	}
	end := len(b)
	if b[0]&0x20 != 0 { // P
		end -= int(b[len(b)-1])
	}
	if n > end {
		return nil, false
	}
	return b[n:end], true
}

// eventDigit maps an RFC 4733 §3.2 DTMF event to its key: 0-9, then
// 10 '*', 11 '#', 12-15 'A'-'D'. Other events (flash, tones) are not digits.
func eventDigit(ev uint8) (byte, bool) {
	if ev > 15 {
		return 0, false
	}
	return "0123456789*#ABCD"[ev], true
}

// dtmfDigits is how many digits a dtmfLog keeps.
const dtmfDigits = 64

// dtmfLog records the digits of one side, once per event. An event's
// packets all carry its start timestamp (RFC 4733 §2.3.1): the first,
// its continuations with a growing duration, and its end packet sent
// three times (§2.5.1.4). So a digit is counted at the first packet of a
// new (SSRC, timestamp); one whose start packet was lost counts at its
// next. Under rtpStats's lock; no allocation but in String.
type dtmfLog struct {
	seen     bool
	ssrc, ts uint32 // of the latest event
	event    uint8
	ended    bool
	duration uint16
	digits   [dtmfDigits]byte // a ring: digit i of all is at i % dtmfDigits
	n        uint64           // digits counted in all
}

func (l *dtmfLog) add(ssrc, ts uint32, ev telephoneEvent) {
	d, ok := eventDigit(ev.event)
	if !ok {
		return
	}
	same := l.seen && ssrc == l.ssrc
	if same && int32(ts-l.ts) <= 0 {
		// This event again, or a late packet of an earlier one.
		if ts == l.ts {
			l.ended = l.ended || ev.end
			l.duration = max(l.duration, ev.duration)
		}
		return
	}
	// §2.5.1.3: an event longer than a duration can say goes on in a new
	// segment, timestamped where the previous one ended; not a new digit.
	segment := same && !l.ended && ev.event == l.event && ts == l.ts+uint32(l.duration)
	l.seen, l.ssrc, l.ts, l.event, l.ended, l.duration = true, ssrc, ts, ev.event, ev.end, ev.duration
	if segment {
		return
	}
	l.digits[l.n%dtmfDigits] = d
	l.n++
}

// String returns the digits kept, oldest first.
func (l *dtmfLog) String() string {
	if l.n <= dtmfDigits {
		return string(l.digits[:l.n])
	}
	i := l.n % dtmfDigits
	return string(l.digits[i:]) + string(l.digits[:i])
}

// telephoneEvents returns the formats of an m= line whose a=rtpmap is
// telephone-event (RFC 4733 §7.1.1: "a=rtpmap:<pt> telephone-event/<rate>"),
// ascending. An rtpmap for a format the m= line does not list is ignored.
func telephoneEvents(formats []string, attrs []sdp.Attribute) []uint8 {
	var set ptSet
	for _, a := range attrs {
		if !strings.EqualFold(a.Key, "rtpmap") {
			continue
		}
		p, enc, ok := strings.Cut(strings.TrimSpace(a.Value), " ")
		name, _, _ := strings.Cut(strings.TrimSpace(enc), "/")
		if !ok || !strings.EqualFold(name, "telephone-event") {
			continue
		}
		if pt, err := strconv.ParseUint(p, 10, 7); err == nil && slices.Contains(formats, p) {
			set.add(uint8(pt))
		}
	}
	return set.list()
}

// ptSet is a set of RTP payload types (7 bits), one bit each.
type ptSet [2]uint64

func ptSetOf(pts ...uint8) ptSet {
	var s ptSet
	for _, pt := range pts {
		s.add(pt)
	}
	return s
}

func (s *ptSet) add(pt uint8)       { s[pt>>6&1] |= 1 << (pt & 63) }
func (s ptSet) has(pt uint8) bool   { return s[pt>>6&1]&(1<<(pt&63)) != 0 }
func (s ptSet) union(o ptSet) ptSet { return ptSet{s[0] | o[0], s[1] | o[1]} }

// list returns the members ascending; nil when there are none.
func (s ptSet) list() []uint8 {
	n := bits.OnesCount64(s[0]) + bits.OnesCount64(s[1])
	if n == 0 {
		return nil
	}
	out := make([]uint8, 0, n)
	for i, w := range s {
		for ; w != 0; w &= w - 1 {
			out = append(out, uint8(64*i+bits.TrailingZeros64(w)))
		}
	}
	return out
}
