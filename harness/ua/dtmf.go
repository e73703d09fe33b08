package ua

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pion/rtp"
)

// telephoneEvent is the payload of an RFC 4733 event packet (section 2.3):
//
//	event (8) | E (1) R (1) volume (6) | duration (16)
type telephoneEvent struct {
	Event    uint8
	End      bool
	Volume   uint8 // 0..63, -dBm0
	Duration uint16
}

var errShortEvent = errors.New("telephone-event payload shorter than 4 bytes")

func (e telephoneEvent) marshal() []byte {
	b := make([]byte, 4)
	b[0] = e.Event
	b[1] = e.Volume & 0x3f
	if e.End {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], e.Duration)
	return b
}

// parseTelephoneEvent reads an RFC 4733 section 2.3 payload; the R bit is
// ignored, as the RFC says a receiver must.
func parseTelephoneEvent(b []byte) (telephoneEvent, error) {
	if len(b) < 4 {
		return telephoneEvent{}, errShortEvent
	}
	return telephoneEvent{Event: b[0], End: b[1]&0x80 != 0, Volume: b[1] & 0x3f,
		Duration: binary.BigEndian.Uint16(b[2:])}, nil
}

// dtmfDigits are the DTMF events 0-15 (RFC 4733 section 3.2), by code.
const dtmfDigits = "0123456789*#ABCD"

// digitEvent is the event code of a DTMF digit.
func digitEvent(r rune) (uint8, bool) {
	i := strings.IndexRune(dtmfDigits, r)
	if i < 0 || r > 0x7f {
		return 0, false
	}
	return uint8(i), true
}

// eventDigit is the digit of an event code, '?' for one that is not DTMF.
func eventDigit(e uint8) rune {
	if int(e) < len(dtmfDigits) {
		return rune(dtmfDigits[e])
	}
	return '?'
}

// dtmfFrame is the packet interval of events, 20 ms (160 samples).
const (
	dtmfFrame   = 20 * time.Millisecond
	dtmfSamples = 160
)

// sendDTMF sends each digit as an RFC 4733 event: a start packet (marker
// set), two continuations, and three end packets (E set), all with the
// timestamp the event began at, one every 20 ms.
func (m *media) sendDTMF(ctx context.Context, digits string) error {
	r := m.remote.Load()
	if r == nil || r.dtmfPT < 0 {
		return ErrNoTelephoneEvent
	}
	codes := make([]uint8, 0, len(digits))
	for _, d := range strings.ToUpper(digits) {
		c, ok := digitEvent(d)
		if !ok {
			return fmt.Errorf("dtmf digit %q: want one of %s", d, dtmfDigits)
		}
		codes = append(codes, c)
	}
	tick := time.NewTicker(dtmfFrame)
	defer tick.Stop()
	for _, code := range codes {
		if err := m.sendEvent(ctx, tick, uint8(r.dtmfPT), code); err != nil {
			return err
		}
	}
	return nil
}

func (m *media) sendEvent(ctx context.Context, tick *time.Ticker, pt, code uint8) error {
	start := m.clock()
	durations := []uint16{1, 2, 3, 4, 4, 4} // in frames
	for i, d := range durations {
		ev := telephoneEvent{Event: code, Volume: 10, Duration: d * dtmfSamples, End: i >= 3}
		m.out.Lock()
		h := rtp.Header{Version: 2, Marker: i == 0, PayloadType: pt, SequenceNumber: m.seq, Timestamp: start, SSRC: m.ssrc}
		to, ok := m.canSend()
		if ok {
			m.seq++
			m.sent++
		}
		m.out.Unlock()
		if !ok {
			return ErrNoMedia
		}
		m.write(&rtp.Packet{Header: h, Payload: ev.marshal()}, to)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			return ErrCallEnded
		case <-tick.C:
		}
	}
	return nil
}
