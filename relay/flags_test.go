package relay

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		in   string
		want func(LegFlags) bool
		err  string
	}{
		{"", func(f LegFlags) bool { return f.Symmetric && !f.SIPSource && !f.ICERemove }, ""},
		{"replace-origin ICE=remove", func(f LegFlags) bool { return f.ReplaceOrigin && f.ICERemove }, ""},
		{"asymmetric", func(f LegFlags) bool { return !f.Symmetric }, ""},
		{"SIP-source-address", func(f LegFlags) bool { return f.SIPSource && !f.TrustAddress }, ""},
		{"SIP-source-address trust-address", func(f LegFlags) bool { return !f.SIPSource && f.TrustAddress }, ""},
		{"media-address=203.0.113.5", func(f LegFlags) bool { return f.MediaAddress == netip.MustParseAddr("203.0.113.5") }, ""},
		{"rtcp-mux-demux loop-protect", func(f LegFlags) bool { return f.RTCPMux == "demux" && f.LoopProtect }, ""},
		{"in-iface=internal out-iface=external replace-session-connection", func(f LegFlags) bool {
			return f.InIface == "internal" && f.OutIface == "external" && f.ReplaceSessionConnection
		}, ""},
		{"replace-orign", nil, `unknown relay flag "replace-orign"`},
		{"ICE=force", nil, "only ICE=remove"},
		{"media-address=somewhere", nil, "not an IP address"},
		{"in-iface=", nil, "needs an interface name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			f, err := ParseFlags(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !tt.want(f) {
				t.Fatalf("ParseFlags(%q) = %+v, %v", tt.in, f, err)
			}
		})
	}
}

func FuzzParseFlags(f *testing.F) {
	f.Add("replace-origin ICE=remove media-address=1.2.3.4")
	f.Add("in-iface==x")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseFlags(s)
	})
}

func TestBehindNAT(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		sdp, src string
		want     bool
	}{
		{"192.168.1.50", "198.51.100.7", true},
		{"100.64.3.4", "198.51.100.7", true},
		{"198.51.100.7", "198.51.100.7", false},
		{"203.0.113.9", "198.51.100.7", false}, // public: trust the SDP
		{"10.0.0.5", "10.0.0.9", false},        // both private: same network
	}
	for _, tt := range tests {
		if got := behindNAT(a(tt.sdp), a(tt.src)); got != tt.want {
			t.Errorf("behindNAT(%s, %s) = %v", tt.sdp, tt.src, got)
		}
	}
}

func TestFlagsRoundTrip(t *testing.T) {
	for _, s := range []string{"symmetric", "asymmetric replace-origin ICE=remove", "SIP-source-address media-address=203.0.113.5 rtcp-mux-demux loop-protect"} {
		f, err := ParseFlags(s)
		if err != nil {
			t.Fatal(err)
		}
		g, err := ParseFlags(f.String())
		if err != nil || g != f {
			t.Errorf("%q → %q → %+v (%v)", s, f.String(), g, err)
		}
	}
}
