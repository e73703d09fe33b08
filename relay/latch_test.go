package relay

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// The builtin engine tells the media relay which IPs each side may latch
// from: the SIP source, and the SDP address when it is usable from here
// (public, or in the same kind of network as the SIP source), or whatever
// its flags say.
func TestBuiltinExpectedSources(t *testing.T) {
	for _, tc := range []struct {
		name, flags, sdp, src string
		want                  []string
	}{
		{"behind NAT: private SDP, public source", "", "192.168.1.50", "198.51.100.7:5060", []string{"198.51.100.7"}},
		{"public SDP elsewhere (media server)", "", "203.0.113.9", "198.51.100.7:5060", []string{"198.51.100.7", "203.0.113.9"}},
		{"same address", "", "198.51.100.7", "198.51.100.7:5060", []string{"198.51.100.7"}},
		{"CGNAT SDP", "", "100.64.1.2", "198.51.100.7:5060", []string{"198.51.100.7"}},
		{"link-local SDP", "", "169.254.1.2", "198.51.100.7:5060", []string{"198.51.100.7"}},
		{"loopback SDP, public source", "", "127.0.0.1", "198.51.100.7:5060", []string{"198.51.100.7"}},
		{"both on a LAN", "", "10.0.0.6", "10.0.0.5:5060", []string{"10.0.0.5", "10.0.0.6"}},
		{"both on loopback", "", "127.0.0.3", "127.0.0.2:5060", []string{"127.0.0.2", "127.0.0.3"}},
		{"trust-address keeps a private SDP", "trust-address", "192.168.1.50", "198.51.100.7:5060", []string{"198.51.100.7", "192.168.1.50"}},
		{"SIP-source-address: the source only", "SIP-source-address", "203.0.113.9", "198.51.100.7:5060", []string{"198.51.100.7"}},
		{"no source, public SDP", "", "203.0.113.9", "", []string{"203.0.113.9"}},
		{"no source, private SDP: unknown", "", "192.168.1.50", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuiltin(t)
			f, err := ParseFlags(tc.flags)
			if err != nil {
				t.Fatal(err)
			}
			var src netip.AddrPort
			if tc.src != "" {
				src = netip.MustParseAddrPort(tc.src)
			}
			key := SessionKey{CallID: "c", FromTag: "f", ViaBranch: "b"}
			sdp := strings.ReplaceAll(offerSDP, "192.168.1.50", tc.sdp)
			if _, err := b.Offer(context.Background(), &Request{Key: key, From: Caller, SDP: []byte(sdp),
				Source: src, Caller: f, Callee: DefaultLegFlags()}); err != nil {
				t.Fatal(err)
			}
			st, err := b.Query(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Streams[0].Caller.ExpectedFrom; !slices.Equal(got, tc.want) {
				t.Errorf("caller expected from %v, want %v", got, tc.want)
			}
			if got := st.Streams[0].CallerRTCP.ExpectedFrom; !slices.Equal(got, tc.want) {
				t.Errorf("caller's RTCP expected from %v, want %v", got, tc.want)
			}
		})
	}
}
