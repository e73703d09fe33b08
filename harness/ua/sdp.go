package ua

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Directions of a media stream (RFC 3264 section 5.1).
const (
	dirSendRecv = "sendrecv"
	dirSendOnly = "sendonly"
	dirRecvOnly = "recvonly"
	dirInactive = "inactive"
)

// ptPCMU is the audio the UA sends; ptEvent is the payload type it offers
// for telephone-event (RFC 4733).
const (
	ptPCMU  = 0
	ptEvent = 101
)

// remoteMedia is what the UA uses of a peer's SDP: its first audio stream.
type remoteMedia struct {
	addr   netip.AddrPort // c= and m= port; port 0: stream refused
	dir    string
	dtmfPT int // -1: no telephone-event
}

// hold reports a stream the peer does not want to receive: a=sendonly,
// a=inactive, or the RFC 2543 c=0.0.0.0.
func (r remoteMedia) hold() bool {
	return r.dir == dirSendOnly || r.dir == dirInactive || r.addr.Addr().IsUnspecified()
}

// parseSDP reads the first audio stream of an SDP (RFC 4566), which must
// offer PCMU.
func parseSDP(b []byte) (remoteMedia, error) {
	var s sdp.SessionDescription
	if err := s.Unmarshal(b); err != nil {
		return remoteMedia{}, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	for _, m := range s.MediaDescriptions {
		if m.MediaName.Media == "audio" {
			return audioStream(&s, m)
		}
	}
	return remoteMedia{}, fmt.Errorf("%w: no audio stream", ErrBadSDP)
}

func audioStream(s *sdp.SessionDescription, m *sdp.MediaDescription) (remoteMedia, error) {
	ci := s.ConnectionInformation
	if m.ConnectionInformation != nil {
		ci = m.ConnectionInformation
	}
	if ci == nil || ci.Address == nil {
		return remoteMedia{}, fmt.Errorf("%w: no c= line", ErrBadSDP)
	}
	ip, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return remoteMedia{}, fmt.Errorf("%w: c= %q: %v", ErrBadSDP, ci.Address.Address, err)
	}
	port := m.MediaName.Port.Value
	if port < 0 || port > 65535 {
		return remoteMedia{}, fmt.Errorf("%w: m= port %d", ErrBadSDP, port)
	}
	if !offers(m, ptPCMU, "PCMU/8000") {
		return remoteMedia{}, fmt.Errorf("%w: no PCMU in m=%s", ErrBadSDP, strings.Join(m.MediaName.Formats, " "))
	}
	r := remoteMedia{addr: netip.AddrPortFrom(ip.Unmap(), uint16(port)), dir: dirSendRecv, dtmfPT: eventPT(m)}
	for _, d := range []string{dirSendRecv, dirSendOnly, dirRecvOnly, dirInactive} {
		_, sess := s.Attribute(d)
		_, med := m.Attribute(d)
		if sess || med {
			r.dir = d
		}
	}
	return r, nil
}

// offers reports whether m lists payload type pt, or a dynamic one mapped to
// encoding (e.g. "PCMU/8000").
func offers(m *sdp.MediaDescription, pt int, encoding string) bool {
	if slices.Contains(m.MediaName.Formats, strconv.Itoa(pt)) {
		return true
	}
	return rtpmapPT(m, encoding) >= 0
}

// eventPT is the payload type m maps to telephone-event/8000, or -1 (also
// when it is PCMU's 0).
func eventPT(m *sdp.MediaDescription) int {
	if pt := rtpmapPT(m, "telephone-event/8000"); pt != ptPCMU {
		return pt
	}
	return -1
}

func rtpmapPT(m *sdp.MediaDescription, encoding string) int {
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, enc, ok := strings.Cut(a.Value, " ")
		n, err := strconv.Atoi(pt)
		if ok && err == nil && n >= 0 && n < 128 && strings.EqualFold(strings.TrimSpace(enc), encoding) &&
			slices.Contains(m.MediaName.Formats, pt) {
			return n
		}
	}
	return -1
}

// answerDir is the direction that answers an offered one (RFC 3264
// section 6.1).
func answerDir(offered string) string {
	switch offered {
	case dirSendOnly:
		return dirRecvOnly
	case dirRecvOnly:
		return dirSendOnly
	case dirInactive:
		return dirInactive
	}
	return dirSendRecv
}

// sends reports whether a stream in direction dir (ours) carries media
// from us.
func sends(dir string) bool { return dir == dirSendRecv || dir == dirSendOnly }

// localSDP is what the UA says about its own stream.
type localSDP struct {
	sessID, version uint64
	addr            netip.AddrPort
	dir             string
	dtmfPT          int // -1: none
}

// marshal writes an SDP offering (or answering with) PCMU and, with
// dtmfPT >= 0, telephone-event 0-16.
func (l localSDP) marshal() ([]byte, error) {
	ipType := "IP4"
	if l.addr.Addr().Is6() {
		ipType = "IP6"
	}
	ip := l.addr.Addr().String()
	m := &sdp.MediaDescription{
		MediaName: sdp.MediaName{Media: "audio", Port: sdp.RangedPort{Value: int(l.addr.Port())},
			Protos: []string{"RTP", "AVP"}, Formats: []string{strconv.Itoa(ptPCMU)}},
		Attributes: []sdp.Attribute{{Key: "rtpmap", Value: "0 PCMU/8000"}},
	}
	if l.dtmfPT >= 0 {
		pt := strconv.Itoa(l.dtmfPT)
		m.MediaName.Formats = append(m.MediaName.Formats, pt)
		m.Attributes = append(m.Attributes, sdp.Attribute{Key: "rtpmap", Value: pt + " telephone-event/8000"},
			sdp.Attribute{Key: "fmtp", Value: pt + " 0-16"})
	}
	m.Attributes = append(m.Attributes, sdp.Attribute{Key: "ptime", Value: "20"}, sdp.Attribute{Key: l.dir})
	s := sdp.SessionDescription{
		Origin: sdp.Origin{Username: "-", SessionID: l.sessID, SessionVersion: l.version,
			NetworkType: "IN", AddressType: ipType, UnicastAddress: ip},
		SessionName:           "sipanchor-ua",
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: ipType, Address: &sdp.Address{Address: ip}},
		TimeDescriptions:      []sdp.TimeDescription{{}},
		MediaDescriptions:     []*sdp.MediaDescription{m},
	}
	return s.Marshal()
}
