package relay

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"sipanchor/media"
)

const offerSDP = "v=0\r\no=alice 1 1 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ice-ufrag:abcd\r\na=candidate:1 1 UDP 2130706431 192.168.1.50 4000 typ host\r\n"

// mediaConnSDP has a session c= that no m= uses: each has its own.
const mediaConnSDP = "v=0\r\no=alice 1 1 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.168.1.51\r\na=rtpmap:0 PCMU/8000\r\n"

func newBuiltin(t *testing.T) *Builtin {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	r, err := media.NewRelay(media.Config{PortMin: 43100, PortMax: 43199, Bind: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return NewBuiltin(r)
}

func TestBuiltinFlags(t *testing.T) {
	tests := []struct {
		name    string
		callee  string // flags of the leg receiving the offer
		caller  string
		sdp     string
		has     []string
		hasNot  []string
		relayed bool
	}{
		{"defaults", "", "", offerSDP, []string{"c=IN IP4 127.0.0.1", "o=alice 1 1 IN IP4 192.168.1.50", "a=candidate"}, []string{"m=audio 4000"}, true},
		{"replace-origin ICE=remove", "replace-origin ICE=remove", "", offerSDP, []string{"o=alice 1 1 IN IP4 127.0.0.1"}, []string{"a=candidate", "a=ice-ufrag"}, true},
		{"media-address", "media-address=203.0.113.9", "", offerSDP, []string{"c=IN IP4 203.0.113.9"}, []string{"c=IN IP4 127.0.0.1"}, true},
		{"session c= kept when every m= has its own", "", "", mediaConnSDP, []string{"\r\nc=IN IP4 192.168.1.50\r\nt=0 0", "c=IN IP4 127.0.0.1"}, []string{"c=IN IP4 192.168.1.51"}, true},
		{"replace-session-connection", "replace-session-connection", "", mediaConnSDP, []string{"\r\nc=IN IP4 127.0.0.1\r\nt=0 0"}, []string{"192.168.1.50\r\nt=0", "c=IN IP4 192.168.1.51"}, true},
		{"loop-protect marks", "loop-protect", "", offerSDP, []string{"a=nortpproxy:yes"}, nil, true},
		{"loop-protect skips marked SDP", "loop-protect", "", offerSDP + "a=nortpproxy:yes\r\n", []string{"m=audio 4000", "c=IN IP4 192.168.1.50"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBuiltin(t)
			callee, err := ParseFlags(tt.callee)
			if err != nil {
				t.Fatal(err)
			}
			caller, _ := ParseFlags(tt.caller)
			rep, err := b.Offer(context.Background(), &Request{Key: SessionKey{CallID: "c", FromTag: "f", ViaBranch: "b"},
				From: Caller, SDP: []byte(tt.sdp), Source: netip.MustParseAddrPort("198.51.100.7:5060"), Caller: caller, Callee: callee})
			if err != nil {
				t.Fatal(err)
			}
			out := string(rep.SDP)
			for _, s := range tt.has {
				if !strings.Contains(out, s) {
					t.Errorf("want %q in:\n%s", s, out)
				}
			}
			for _, s := range tt.hasNot {
				if strings.Contains(out, s) {
					t.Errorf("do not want %q in:\n%s", s, out)
				}
			}
			if (rep.Session != nil) != tt.relayed || (b.Sessions() == 1) != tt.relayed {
				t.Errorf("relayed: session %v, %d sessions; want %v", rep.Session != nil, b.Sessions(), tt.relayed)
			}
		})
	}
}

// The private SDP address of a UA behind NAT is replaced by its SIP source
// as the pre-latch target; trust-address keeps the SDP's.
func TestBuiltinNATHint(t *testing.T) {
	for _, tc := range []struct {
		flags, want string
	}{{"", "198.51.100.7:4000"}, {"trust-address", "192.168.1.50:4000"}, {"SIP-source-address", "198.51.100.7:4000"}} {
		b := newBuiltin(t)
		f, _ := ParseFlags(tc.flags)
		key := SessionKey{CallID: "c", FromTag: "f", ViaBranch: "b"}
		if _, err := b.Offer(context.Background(), &Request{Key: key, From: Caller, SDP: []byte(offerSDP),
			Source: netip.MustParseAddrPort("198.51.100.7:5060"), Caller: f, Callee: DefaultLegFlags()}); err != nil {
			t.Fatal(err)
		}
		st, err := b.Query(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Streams[0].Caller.Target; got != tc.want {
			t.Errorf("flags %q: caller's target %s, want %s", tc.flags, got, tc.want)
		}
		if got := st.Streams[0].Caller.SDPAddr; got != "192.168.1.50:4000" {
			t.Errorf("flags %q: SDP address reported as %s", tc.flags, got)
		}
	}
}

func TestBuiltinErrors(t *testing.T) {
	b := newBuiltin(t)
	key := SessionKey{CallID: "c", FromTag: "f", ViaBranch: "b"}
	_, err := b.Offer(context.Background(), &Request{Key: key, From: Caller, SDP: []byte("not sdp"), Caller: DefaultLegFlags(), Callee: DefaultLegFlags()})
	var se *SDPError
	if !errors.As(err, &se) {
		t.Errorf("bad SDP: %v, want *SDPError", err)
	}
	if _, err := b.Answer(context.Background(), &Request{Key: key, From: Callee, SDP: []byte(offerSDP), Caller: DefaultLegFlags(), Callee: DefaultLegFlags()}); !errors.Is(err, ErrNoSession) {
		t.Errorf("answer without offer: %v", err)
	}
	if b.Sessions() != 0 {
		t.Errorf("%d sessions after failures", b.Sessions())
	}
	if err := b.Delete(context.Background(), &Request{Key: key}); err != nil {
		t.Errorf("deleting nothing: %v", err)
	}
}
