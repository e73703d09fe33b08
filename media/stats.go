package media

import (
	"encoding/binary"
	"math"
	"sync"
	"time"
)

// rtpStats computes receive statistics of one RTP stream as RFC 3550
// Appendix A.1 (sequence tracking, A.3 loss) and A.8 (interarrival jitter)
// describe, and what a test of the call asserts on: the payload types seen
// and the DTMF digits received. The reader goroutine updates it; queries
// read a snapshot.
type rtpStats struct {
	mu sync.Mutex
	d  rtpData
	// Kept across a change of SSRC (d starts over): all the side sent.
	seen ptSet   // payload types received
	dtmf dtmfLog // digits received on events' payload types
	// events are the payload types carrying RFC 4733 events, from the
	// SDP of either side (set by signalling, under mu).
	events ptSet
}

type rtpData struct {
	started   bool
	ssrc      uint32
	baseSeq   uint32
	maxSeq    uint16
	cycles    uint32
	received  uint64
	transit   int64   // last relative transit time, in RTP units
	jitter    float64 // in RTP timestamp units
	clockRate uint32
}

// maxDropout and maxMisorder as in RFC 3550 A.1.
const (
	maxDropout  = 3000
	maxMisorder = 100
)

// update takes one RTP packet (b is the whole datagram) that arrived at now.
// Packets too short for an RTP header, or not version 2, are not counted.
func (s *rtpStats) update(b []byte, now time.Time) {
	// RFC 3550 §5.1: V(2) P X CC | M PT | sequence number | timestamp | SSRC.
	if len(b) < 12 || b[0]>>6 != 2 {
		return
	}
	pt := b[1] & 0x7f
	if pt >= 72 && pt <= 76 { // RTCP multiplexed on the RTP port (RFC 5761 §4)
		return
	}
	seq := binary.BigEndian.Uint16(b[2:4])
	ts := binary.BigEndian.Uint32(b[4:8])
	ssrc := binary.BigEndian.Uint32(b[8:12])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen.add(pt)
	event := s.events.has(pt)
	if event {
		if p, ok := rtpPayload(b); ok {
			if ev, ok := parseTelephoneEvent(p); ok {
				s.dtmf.add(ssrc, ts, ev)
			}
		}
	}
	s.d.update(seq, ts, ssrc, now, event)
}

// update tracks one packet's sequence number and, unless it is an RFC 4733
// event, its jitter: an event's packets all carry its start timestamp
// while they keep coming for its duration (§2.3.1), which is no lateness.
func (s *rtpData) update(seq uint16, ts, ssrc uint32, now time.Time, event bool) {
	if !s.started || ssrc != s.ssrc {
		// A new source (first packet, or the UA restarted its stream).
		*s = rtpData{started: true, ssrc: ssrc, baseSeq: uint32(seq), maxSeq: seq, clockRate: s.clockRate}
		s.received = 1
		s.transit = s.arrival(now) - int64(ts)
		return
	}
	delta := seq - s.maxSeq
	switch {
	case delta < maxDropout:
		if seq < s.maxSeq {
			s.cycles += 1 << 16
		}
		s.maxSeq = seq
	case delta <= 1<<16-maxMisorder:
		// A very large jump: treat as a restart of the sequence.
		s.baseSeq = uint32(seq)
		s.maxSeq = seq
		s.cycles = 0
		s.received = 0
	default:
		// Duplicate or reordered packet: counted, no effect on max.
	}
	s.received++
	if event {
		return
	}
	// A.8: J += (|D| - J) / 16.
	transit := s.arrival(now) - int64(ts)
	d := transit - s.transit
	s.transit = transit
	if d < 0 {
		d = -d
	}
	s.jitter += (float64(d) - s.jitter) / 16
}

func (s *rtpData) arrival(now time.Time) int64 {
	rate := s.clockRate
	if rate == 0 {
		rate = 8000
	}
	return now.UnixNano() * int64(rate) / int64(time.Second)
}

func (s *rtpStats) setClockRate(r uint32) {
	s.mu.Lock()
	s.d.clockRate = r
	s.mu.Unlock()
}

// setEvents says which payload types carry RFC 4733 events.
func (s *rtpStats) setEvents(pts ptSet) {
	s.mu.Lock()
	s.events = pts
	s.mu.Unlock()
}

// fill sets the RTP figures of e: loss and jitter, payload types, DTMF
// digits and the MOS estimated from them (once the side has sent RTP).
func (s *rtpStats) fill(e *EndpointStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.Expected, e.Lost, e.JitterMS = s.d.snapshot()
	e.PayloadTypes = s.seen.list()
	e.DTMF = s.dtmf.String()
	if e.Expected > 0 {
		m := estimateMOS(float64(e.Lost)/float64(e.Expected), e.JitterMS)
		e.MOS = math.Round(m*100) / 100
	}
}

// snapshot returns packets expected and lost so far and the jitter in ms.
func (s *rtpStats) snapshot() (expected, lost int64, jitterMS float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d.snapshot()
}

func (s *rtpData) snapshot() (expected, lost int64, jitterMS float64) {
	if !s.started {
		return 0, 0, 0
	}
	ext := int64(s.cycles) + int64(s.maxSeq)
	expected = ext - int64(s.baseSeq) + 1
	lost = expected - int64(s.received)
	if lost < 0 {
		lost = 0 // duplicates
	}
	rate := s.clockRate
	if rate == 0 {
		rate = 8000
	}
	return expected, lost, s.jitter * 1000 / float64(rate)
}
