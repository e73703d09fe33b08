package media

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// ErrBadSDP is wrapped by every parse/rewrite error.
var ErrBadSDP = errors.New("bad SDP")

// StreamInfo describes one m= line of an SDP.
type StreamInfo struct {
	Index     int        // position of the m= line, from 0
	Media     string     // "audio", "video", ...
	Proto     string     // "RTP/AVP", "RTP/SAVP", ...
	Port      int        // m= port; 0 = rejected/disabled stream
	Addr      netip.Addr // connection address: media-level c= if present, else session-level c=; invalid if neither
	RTCPPort  int        // from a=rtcp:PORT (RFC 3605) if present, else Port+1 (0 if Port is 0)
	RTCPMux   bool       // a=rtcp-mux present (RFC 5761)
	Direction string     // "sendrecv" (default), "sendonly", "recvonly" or "inactive": media-level attribute, else session-level, else sendrecv
	Hold      bool       // Direction is sendonly or inactive, or Addr is 0.0.0.0 / :: (RFC 3264 §8.4 and RFC 2543-style hold)
	Formats   []string   // payload types from the m= line
	// ClockRate is the clock rate of the first format: from its a=rtpmap,
	// else the RFC 3551 static table, else 8000 for audio, 90000 for video
	// and 0 for other media (e.g. T.38 m=image).
	ClockRate uint32
	// TelephoneEvents are the formats of the m= line that a=rtpmap names
	// telephone-event (RFC 4733 §7.1.1: DTMF and other events).
	TelephoneEvents []uint8
	// Target is where to send before the side latches, when the relay's
	// user knows better than Addr (a UA behind NAT); zero = Addr.
	Target netip.Addr
	// Expect lists the IPs the side's media may come from (its SIP source,
	// a usable SDP address), set by the relay's user: in LatchStrict mode
	// only they latch. Empty = unknown: the first packet latches.
	Expect []netip.Addr
}

// SDPInfo is what the relay needs to know of an SDP.
type SDPInfo struct {
	Streams    []StreamInfo
	NoRTPProxy bool   // an a=nortpproxy:yes attribute is present at session or media level (loop protection marker used by rtpproxy/rtpengine)
	OriginAddr string // o= unicast address as written
}

// ParseSDP parses an SDP body (RFC 4566). Errors wrap ErrBadSDP and say what
// is wrong. LF and CRLF line endings are both accepted.
func ParseSDP(b []byte) (*SDPInfo, error) {
	_, info, err := parseSDP(b)
	return info, err
}

// Rewrite says how to rewrite an SDP to point at the relay.
type Rewrite struct {
	// Addr is the address to advertise in c= (and o= with ReplaceOrigin).
	// It must be valid and specified; an IPv4-mapped IPv6 address is
	// advertised as IPv4.
	Addr netip.Addr
	// Ports is the relay RTP port for each m= line by index; RTCP is
	// Ports[i]+1, so a non-rejected stream's port must be 1..65534. A stream
	// whose original port is 0 stays 0 whatever Ports says. len(Ports) must
	// equal the number of m= lines.
	Ports []int
	// ReplaceOrigin rewrites the o= address (and its address type IP4/IP6)
	// to Addr.
	ReplaceOrigin bool
	// ReplaceSessionConnection rewrites the session-level c= even when
	// every m= has a c= of its own (rtpengine's replace session-connection);
	// without it that session c= is nobody's media address and is left
	// alone, as rtpengine does.
	ReplaceSessionConnection bool
	// RemoveICE drops a=candidate, a=remote-candidates, a=end-of-candidates,
	// a=ice-ufrag, a=ice-pwd, a=ice-options, a=ice-lite and a=ice-mismatch
	// at session and media level.
	RemoveICE bool
	// LoopProtect adds a=nortpproxy:yes at session level, unless the session
	// level already has it.
	LoopProtect bool
	// RTCPMux is "" to keep a=rtcp-mux (RFC 5761 §5.1.1) as is, "offer" to
	// add it to each non-rejected stream that lacks it, "reject" or "demux"
	// to remove it.
	RTCPMux string
}

// iceAttributes are the ICE attributes of RFC 8839 §5 (and a=ice-mismatch,
// a=remote-candidates of RFC 5245 §15) that RemoveICE drops: once the relay
// anchors the media, the UA's candidates are neither reachable nor wanted.
var iceAttributes = []string{
	"candidate", "remote-candidates", "end-of-candidates", "ice-ufrag",
	"ice-pwd", "ice-options", "ice-lite", "ice-mismatch",
}

// RewriteSDP returns b rewritten by rw, as rtpengine/rtpproxy do when they
// anchor media:
//
//   - each non-rejected m= port (RFC 4566 §5.14) becomes rw.Ports[i];
//   - the session-level c= (RFC 4566 §5.7), when some m= has no c= of its
//     own or rw.ReplaceSessionConnection is set, and every media-level c= of a
//     non-rejected stream become rw.Addr, and a stream covered by neither gets
//     a media-level c=. A c= of 0.0.0.0 or :: is kept: it is a hold
//     (RFC 3264 §8.4, RFC 2543 style) and the answerer must still see it;
//   - a=rtcp:PORT [IN IP4|IP6 addr] (RFC 3605 §2.1) becomes rw.Ports[i]+1 and
//     its address, if any and not 0.0.0.0/::, rw.Addr. No a=rtcp is added;
//   - direction attributes (RFC 4566 §6, RFC 3264 §5.1) are never changed;
//   - rejected streams (port 0, RFC 3264 §6) are copied unchanged, except
//     that RemoveICE and RTCPMux "reject"/"demux" apply to them as well.
//
// A port range (m=audio 49170/2) is dropped from a rewritten stream: the
// relay offers one RTP/RTCP pair. Everything else is kept as pion/sdp
// marshals it, with CRLF line endings.
func RewriteSDP(b []byte, rw Rewrite) ([]byte, error) {
	desc, info, err := parseSDP(b)
	if err != nil {
		return nil, err
	}
	if !rw.Addr.IsValid() {
		return nil, fmt.Errorf("%w: invalid rewrite address", ErrBadSDP)
	}
	addr := rw.Addr.Unmap().WithZone("")
	if addr.IsUnspecified() {
		return nil, fmt.Errorf("%w: rewrite address %s is unspecified", ErrBadSDP, addr)
	}
	if len(rw.Ports) != len(info.Streams) {
		return nil, fmt.Errorf("%w: %d ports for %d m= lines", ErrBadSDP, len(rw.Ports), len(info.Streams))
	}
	for i, st := range info.Streams {
		if st.Port != 0 && (rw.Ports[i] < 1 || rw.Ports[i] > 65534) {
			return nil, fmt.Errorf("%w: relay port %d for m= line %d out of range 1..65534", ErrBadSDP, rw.Ports[i], i)
		}
	}
	switch rw.RTCPMux {
	case "", "offer", "reject", "demux":
	default:
		return nil, fmt.Errorf("%w: unknown rtcp-mux mode %q", ErrBadSDP, rw.RTCPMux)
	}

	sessionConnUsed := rw.ReplaceSessionConnection
	for _, md := range desc.MediaDescriptions {
		if md.ConnectionInformation == nil {
			sessionConnUsed = true
		}
	}
	if ci := desc.ConnectionInformation; ci != nil && !isHoldConn(ci) && sessionConnUsed {
		desc.ConnectionInformation = connInfo(addr)
	}
	if rw.ReplaceOrigin {
		desc.Origin.NetworkType = "IN"
		desc.Origin.AddressType = addrType(addr)
		desc.Origin.UnicastAddress = addr.String()
	}
	if rw.RemoveICE {
		desc.Attributes = dropAttributes(desc.Attributes, iceAttributes...)
	}
	if rw.LoopProtect && !hasNoRTPProxy(desc.Attributes) {
		desc.Attributes = append(desc.Attributes, sdp.NewAttribute("nortpproxy", "yes"))
	}

	for i, md := range desc.MediaDescriptions {
		if rw.RemoveICE {
			md.Attributes = dropAttributes(md.Attributes, iceAttributes...)
		}
		if rw.RTCPMux == "reject" || rw.RTCPMux == "demux" {
			md.Attributes = dropAttributes(md.Attributes, "rtcp-mux")
		}
		if info.Streams[i].Port == 0 {
			continue
		}
		port := rw.Ports[i]
		md.MediaName.Port = sdp.RangedPort{Value: port}
		switch {
		case md.ConnectionInformation != nil:
			if !isHoldConn(md.ConnectionInformation) {
				md.ConnectionInformation = connInfo(addr)
			}
		case desc.ConnectionInformation == nil:
			md.ConnectionInformation = connInfo(addr)
		}
		for j, a := range md.Attributes {
			if strings.EqualFold(a.Key, "rtcp") {
				md.Attributes[j].Value = rewriteRTCP(a.Value, port+1, addr)
			}
		}
		if rw.RTCPMux == "offer" && !hasAttribute(md.Attributes, "rtcp-mux") {
			md.Attributes = append(md.Attributes, sdp.NewPropertyAttribute("rtcp-mux"))
		}
	}

	out, err := desc.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	return out, nil
}

// parseSDP parses and validates b, returning pion's description (for
// RewriteSDP to edit) and what the relay needs to know.
func parseSDP(b []byte) (*sdp.SessionDescription, *SDPInfo, error) {
	norm, err := normalizeSDP(b)
	if err != nil {
		return nil, nil, err
	}
	norm, names, err := maskMediaNames(norm)
	if err != nil {
		return nil, nil, err
	}
	var desc sdp.SessionDescription
	if err := desc.Unmarshal(norm); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	if len(desc.MediaDescriptions) == 0 {
		return nil, nil, fmt.Errorf("%w: no m= line", ErrBadSDP)
	}
	if len(desc.MediaDescriptions) != len(names) {
		return nil, nil, fmt.Errorf("%w: %d m= lines parsed of %d", ErrBadSDP, len(desc.MediaDescriptions), len(names))
	}
	for i, md := range desc.MediaDescriptions {
		md.MediaName.Media = names[i].media
		md.MediaName.Protos = strings.Split(names[i].proto, "/")
	}

	info := &SDPInfo{
		OriginAddr: desc.Origin.UnicastAddress,
		NoRTPProxy: hasNoRTPProxy(desc.Attributes),
	}
	var sessAddr netip.Addr
	if desc.ConnectionInformation != nil {
		if sessAddr, err = connAddr(desc.ConnectionInformation, "session-level c="); err != nil {
			return nil, nil, err
		}
	}
	sessDir := direction(desc.Attributes)

	for i, md := range desc.MediaDescriptions {
		where := fmt.Sprintf("m= line %d (%s)", i, md.MediaName.Media)
		st := StreamInfo{
			Index:   i,
			Media:   md.MediaName.Media,
			Proto:   strings.Join(md.MediaName.Protos, "/"),
			Port:    md.MediaName.Port.Value,
			Addr:    sessAddr,
			RTCPMux: hasAttribute(md.Attributes, "rtcp-mux"),
			Formats: md.MediaName.Formats,
		}
		if st.Port < 0 || st.Port > 65535 {
			return nil, nil, fmt.Errorf("%w: %s: port %d out of range 0..65535", ErrBadSDP, where, st.Port)
		}
		if md.ConnectionInformation != nil {
			if st.Addr, err = connAddr(md.ConnectionInformation, where+" c="); err != nil {
				return nil, nil, err
			}
		}
		if st.Port != 0 {
			st.RTCPPort = st.Port + 1
		}
		for _, a := range md.Attributes {
			if strings.EqualFold(a.Key, "rtcp") {
				if st.RTCPPort, err = parseRTCP(a.Value, where); err != nil {
					return nil, nil, err
				}
				break
			}
		}
		st.Direction = direction(md.Attributes)
		if st.Direction == "" {
			st.Direction = sessDir
		}
		if st.Direction == "" {
			st.Direction = "sendrecv"
		}
		st.Hold = st.Direction == "sendonly" || st.Direction == "inactive" ||
			(st.Addr.IsValid() && st.Addr.IsUnspecified())
		st.ClockRate = clockRate(st.Media, st.Formats, md.Attributes)
		st.TelephoneEvents = telephoneEvents(st.Formats, md.Attributes)
		if hasNoRTPProxy(md.Attributes) {
			info.NoRTPProxy = true
		}
		info.Streams = append(info.Streams, st)
	}
	return &desc, info, nil
}

// normalizeSDP gives every line a CRLF ending (RFC 4566 §5: "the sequence
// CRLF ... is used to end a record, although parsers SHOULD be tolerant and
// also accept records terminated with a single newline character"), drops
// blank lines and makes sure the last line is terminated, which pion/sdp
// needs. A CR that does not end a line is refused.
func normalizeSDP(b []byte) ([]byte, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadSDP)
	}
	out := make([]byte, 0, len(b)+64)
	for n, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			continue
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			return nil, fmt.Errorf("%w: line %d: stray CR", ErrBadSDP, n+1)
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return out, nil
}

// mediaName is the <media> and <proto> of an m= line as written.
type mediaName struct{ media, proto string }

// maskMediaNames replaces <media> and <proto> of every m= line of a
// normalised SDP with "audio" and "RTP/AVP", and returns them as written.
// pion/sdp only accepts the media and proto values it knows, which leaves
// out T.38 fax (m=image 4000 udptl t38, RFC 6466); RFC 4566 §5.14 makes
// both extensible tokens, so they are checked here against its grammar
// (media = token, proto = token *("/" token)) and put back after parsing.
func maskMediaNames(b []byte) ([]byte, []mediaName, error) {
	var names []mediaName
	out := make([]byte, 0, len(b))
	for line := range bytes.Lines(b) {
		if !bytes.HasPrefix(line, []byte("m=")) {
			out = append(out, line...)
			continue
		}
		f := strings.Fields(string(line[2:]))
		if len(f) < 3 {
			return nil, nil, fmt.Errorf("%w: m= line %d: %q has no <media> <port> <proto>", ErrBadSDP, len(names), bytes.TrimSpace(line))
		}
		if !isToken(f[0]) {
			return nil, nil, fmt.Errorf("%w: m= line %d: bad media %q", ErrBadSDP, len(names), f[0])
		}
		for p := range strings.SplitSeq(f[2], "/") {
			if !isToken(p) {
				return nil, nil, fmt.Errorf("%w: m= line %d: bad proto %q", ErrBadSDP, len(names), f[2])
			}
		}
		names = append(names, mediaName{media: f[0], proto: f[2]})
		f[0], f[2] = "audio", "RTP/AVP"
		out = append(out, "m="+strings.Join(f, " ")+"\r\n"...)
	}
	return out, names, nil
}

// isToken reports whether s is an RFC 4566 §9 token: one or more of
// %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c == 0x21, c >= 0x23 && c <= 0x27, c == 0x2a, c == 0x2b, c == 0x2d, c == 0x2e,
			c >= 0x30 && c <= 0x39, c >= 0x41 && c <= 0x5a, c >= 0x5e && c <= 0x7e:
		default:
			return false
		}
	}
	return true
}

// connAddr returns the address of a c= line (RFC 4566 §5.7:
// c=<nettype> <addrtype> <connection-address>). A multicast TTL or count
// ("/127/3") is ignored. Hostnames are allowed by RFC 4566 but a relay has
// no business resolving them, so they are refused.
func connAddr(ci *sdp.ConnectionInformation, where string) (netip.Addr, error) {
	if ci.Address == nil || ci.Address.Address == "" {
		return netip.Addr{}, fmt.Errorf("%w: %s has no address", ErrBadSDP, where)
	}
	s, _, _ := strings.Cut(ci.Address.Address, "/")
	a, err := netip.ParseAddr(s)
	if err != nil {
		if isHostname(s) {
			return netip.Addr{}, fmt.Errorf("%w: %s address %q is a hostname, not an IP literal", ErrBadSDP, where, s)
		}
		return netip.Addr{}, fmt.Errorf("%w: %s address %q is not an IP literal", ErrBadSDP, where, s)
	}
	return a, nil
}

// isHostname reports whether s looks like a DNS name (letters, digits, dots
// and hyphens, with at least one letter).
func isHostname(s string) bool {
	letter := false
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letter = true
		case c >= '0' && c <= '9', c == '.', c == '-':
		default:
			return false
		}
	}
	return letter
}

// isHoldConn reports whether a c= line is the 0.0.0.0 (or ::) hold address
// (RFC 3264 §8.4 keeps it for backward compatibility with RFC 2543).
func isHoldConn(ci *sdp.ConnectionInformation) bool {
	if ci.Address == nil {
		return false
	}
	s, _, _ := strings.Cut(ci.Address.Address, "/")
	a, err := netip.ParseAddr(s)
	return err == nil && a.IsUnspecified()
}

func addrType(a netip.Addr) string {
	if a.Is4() {
		return "IP4"
	}
	return "IP6"
}

func connInfo(a netip.Addr) *sdp.ConnectionInformation {
	return &sdp.ConnectionInformation{
		NetworkType: "IN",
		AddressType: addrType(a),
		Address:     &sdp.Address{Address: a.String()},
	}
}

// parseRTCP parses the value of RFC 3605 §2.1
// "rtcp-attribute = "a=rtcp:" port [nettype space addrtype space
// connection-address] CRLF" and returns the port.
func parseRTCP(v, where string) (int, error) {
	f := strings.Fields(v)
	if len(f) != 1 && len(f) != 4 {
		return 0, fmt.Errorf("%w: %s: malformed a=rtcp:%s", ErrBadSDP, where, v)
	}
	port, err := strconv.Atoi(f[0])
	if err != nil || port < 0 || port > 65535 {
		return 0, fmt.Errorf("%w: %s: a=rtcp port %q is not 0..65535", ErrBadSDP, where, f[0])
	}
	if len(f) == 4 {
		if f[1] != "IN" || (f[2] != "IP4" && f[2] != "IP6") {
			return 0, fmt.Errorf("%w: %s: a=rtcp address type %q %q is not IN IP4/IP6", ErrBadSDP, where, f[1], f[2])
		}
		ci := &sdp.ConnectionInformation{NetworkType: f[1], AddressType: f[2], Address: &sdp.Address{Address: f[3]}}
		if _, err := connAddr(ci, where+" a=rtcp"); err != nil {
			return 0, err
		}
	}
	return port, nil
}

// rewriteRTCP rewrites an a=rtcp value (already validated by parseRTCP) to
// port, and its address, if any, to addr unless it is a hold address.
func rewriteRTCP(v string, port int, addr netip.Addr) string {
	f := strings.Fields(v)
	if len(f) != 4 {
		return strconv.Itoa(port)
	}
	ci := &sdp.ConnectionInformation{NetworkType: f[1], AddressType: f[2], Address: &sdp.Address{Address: f[3]}}
	if isHoldConn(ci) {
		return strconv.Itoa(port) + " " + strings.Join(f[1:], " ")
	}
	return strconv.Itoa(port) + " IN " + addrType(addr) + " " + addr.String()
}

// direction returns the first direction attribute (RFC 4566 §6: sendrecv,
// sendonly, recvonly, inactive) of attrs, or "".
func direction(attrs []sdp.Attribute) string {
	for _, a := range attrs {
		switch k := strings.ToLower(a.Key); k {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			if a.Value == "" {
				return k
			}
		}
	}
	return ""
}

func hasAttribute(attrs []sdp.Attribute, key string) bool {
	for _, a := range attrs {
		if strings.EqualFold(a.Key, key) {
			return true
		}
	}
	return false
}

// hasNoRTPProxy reports whether attrs hold the a=nortpproxy:yes loop
// protection marker of rtpproxy/rtpengine.
func hasNoRTPProxy(attrs []sdp.Attribute) bool {
	for _, a := range attrs {
		if strings.EqualFold(a.Key, "nortpproxy") && strings.EqualFold(strings.TrimSpace(a.Value), "yes") {
			return true
		}
	}
	return false
}

// dropAttributes returns attrs without those whose key is one of keys.
func dropAttributes(attrs []sdp.Attribute, keys ...string) []sdp.Attribute {
	out := attrs[:0]
	for _, a := range attrs {
		drop := false
		for _, k := range keys {
			if strings.EqualFold(a.Key, k) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, a)
		}
	}
	return out
}

// staticClockRates are the clock rates of the static payload types of
// RFC 3551 §6, Tables 4 and 5. G722 (9) is 8000 although it samples at
// 16 kHz: "the RTP clock rate for G.722 is 8,000 Hz" (RFC 3551 §4.5.2).
var staticClockRates = map[string]uint32{
	"0": 8000, "3": 8000, "4": 8000, "5": 8000, "6": 16000, "7": 8000,
	"8": 8000, "9": 8000, "10": 44100, "11": 44100, "12": 8000, "13": 8000,
	"14": 90000, "15": 8000, "16": 11025, "17": 22050, "18": 8000,
	"25": 90000, "26": 90000, "28": 90000, "31": 90000, "32": 90000,
	"33": 90000, "34": 90000,
}

// clockRate returns the clock rate of the first format: from its a=rtpmap
// (RFC 4566 §6: a=rtpmap:<payload type> <encoding name>/<clock rate>...),
// else from the static table of RFC 3551, else 8000 for audio and 90000
// for video (0 for other media).
func clockRate(media string, formats []string, attrs []sdp.Attribute) uint32 {
	if len(formats) > 0 {
		pt := formats[0]
		for _, a := range attrs {
			if !strings.EqualFold(a.Key, "rtpmap") {
				continue
			}
			p, enc, ok := strings.Cut(strings.TrimSpace(a.Value), " ")
			if !ok || p != pt {
				continue
			}
			parts := strings.Split(strings.TrimSpace(enc), "/")
			if len(parts) >= 2 {
				if r, err := strconv.ParseUint(parts[1], 10, 32); err == nil && r > 0 {
					return uint32(r)
				}
			}
			break
		}
		if r, ok := staticClockRates[pt]; ok {
			return r
		}
	}
	switch media {
	case "audio":
		return 8000
	case "video":
		return 90000
	}
	return 0
}
