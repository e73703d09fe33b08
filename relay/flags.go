package relay

import (
	"fmt"
	"net/netip"
	"strings"
)

// LegFlags are one leg's relay flags, as in OpenSIPS's $rtp_relay and
// $rtp_relay_peer (shared/seeds rtp_relay, rtpengine §flags).
type LegFlags struct {
	// Symmetric: learn where to send from the leg's packets, from whom
	// [media] latch allows (the default); asymmetric legs never latch:
	// they are sent to their SDP address and accepted from anyone.
	Symmetric bool
	// SIPSource: take the address from the SIP message's source, not from
	// the SDP, and expect media only from there (rtpengine
	// "SIP-source-address").
	SIPSource bool
	// TrustAddress: use the SDP address even when it looks like one behind
	// NAT, and accept media from it in strict latching (rtpengine
	// "trust-address").
	TrustAddress bool
	// ReplaceOrigin rewrites o= to the relay's address in SDP sent to this leg.
	ReplaceOrigin bool
	// ReplaceSessionConnection: rewrite the session-level c= in SDP sent to
	// this leg even when every m= has its own c= (otherwise that session
	// c= is left alone, as rtpengine does).
	ReplaceSessionConnection bool
	// MediaAddress overrides the advertised address in SDP sent to this leg.
	MediaAddress netip.Addr
	// ICERemove strips ICE attributes from SDP sent to this leg.
	ICERemove bool
	// RTCPMux is "", "offer", "accept", "demux" or "reject".
	RTCPMux string
	// LoopProtect marks SDP with a=nortpproxy:yes and leaves SDP that has
	// the mark alone.
	LoopProtect bool
	// InIface, OutIface name media interfaces (one interface for now).
	InIface, OutIface string
}

// DefaultLegFlags are the flags of a leg nobody configured.
func DefaultLegFlags() LegFlags { return LegFlags{Symmetric: true} }

// ParseFlags reads rtpengine-style flags ("replace-origin ICE=remove
// symmetric media-address=203.0.113.5") over the defaults. Unknown flags
// are an error, so a typo in a config does not silently do nothing.
func ParseFlags(s string) (LegFlags, error) {
	f := DefaultLegFlags()
	for _, tok := range strings.Fields(s) {
		key, val, hasVal := strings.Cut(tok, "=")
		switch strings.ToLower(key) {
		case "symmetric":
			f.Symmetric = true
		case "asymmetric":
			f.Symmetric = false
		case "trust-address":
			f.SIPSource, f.TrustAddress = false, true
		case "sip-source-address":
			f.SIPSource, f.TrustAddress = true, false
		case "replace-origin":
			f.ReplaceOrigin = true
		case "replace-session-connection":
			f.ReplaceSessionConnection = true
		case "loop-protect":
			f.LoopProtect = true
		case "ice":
			if !strings.EqualFold(val, "remove") {
				return f, fmt.Errorf("flag %q: only ICE=remove is supported", tok)
			}
			f.ICERemove = true
		case "media-address":
			a, err := netip.ParseAddr(val)
			if err != nil {
				return f, fmt.Errorf("flag %q: not an IP address", tok)
			}
			f.MediaAddress = a
		case "rtcp-mux-offer", "rtcp-mux-accept", "rtcp-mux-demux", "rtcp-mux-reject":
			f.RTCPMux = strings.TrimPrefix(strings.ToLower(key), "rtcp-mux-")
		case "in-iface", "out-iface":
			if val == "" {
				return f, fmt.Errorf("flag %q: needs an interface name", tok)
			}
			if strings.EqualFold(key, "in-iface") {
				f.InIface = val
			} else {
				f.OutIface = val
			}
		default:
			return f, fmt.Errorf("unknown relay flag %q", tok)
		}
		if hasVal && val == "" {
			return f, fmt.Errorf("flag %q: empty value", tok)
		}
	}
	return f, nil
}

// String writes the flags back in rtpengine style, defaults left out.
func (f LegFlags) String() string {
	var s []string
	if !f.Symmetric {
		s = append(s, "asymmetric")
	}
	if f.SIPSource {
		s = append(s, "SIP-source-address")
	}
	if f.TrustAddress {
		s = append(s, "trust-address")
	}
	if f.ReplaceOrigin {
		s = append(s, "replace-origin")
	}
	if f.ReplaceSessionConnection {
		s = append(s, "replace-session-connection")
	}
	if f.MediaAddress.IsValid() {
		s = append(s, "media-address="+f.MediaAddress.String())
	}
	if f.ICERemove {
		s = append(s, "ICE=remove")
	}
	if f.RTCPMux != "" {
		s = append(s, "rtcp-mux-"+f.RTCPMux)
	}
	if f.LoopProtect {
		s = append(s, "loop-protect")
	}
	if f.InIface != "" {
		s = append(s, "in-iface="+f.InIface)
	}
	if f.OutIface != "" {
		s = append(s, "out-iface="+f.OutIface)
	}
	if len(s) == 0 {
		return "symmetric"
	}
	return strings.Join(s, " ")
}
