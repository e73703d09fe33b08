package ng

import (
	"context"
	"slices"
	"testing"

	"sipanchor/relay"
)

// What a side is expected to send media from (strict latching) comes from
// the proxy's received-from (where the SIP came from), never from the
// address of the proxy that sends the NG command.
func TestNGExpectedSourceFromReceivedFrom(t *testing.T) {
	for _, tc := range []struct {
		name string
		rf   []any
		sdp  string
		want []string
	}{
		{"received-from", []any{"IP4", "198.51.100.7"}, "192.168.1.50", []string{"198.51.100.7"}},
		{"received-from and a public SDP", []any{"IP4", "198.51.100.7"}, "203.0.113.9", []string{"198.51.100.7", "203.0.113.9"}},
		{"no received-from: the SDP's, not the proxy's", nil, "203.0.113.9", []string{"203.0.113.9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, b, c := newServer(t)
			d := map[string]any{"command": "offer", "call-id": "c1", "from-tag": "ft", "sdp": sdp(tc.sdp, 4000)}
			if tc.rf != nil {
				d["received-from"] = tc.rf
			}
			if r := ask(t, c, d); r["result"] != "ok" {
				t.Fatalf("offer: %v", r)
			}
			st, err := b.Query(context.Background(), relay.SessionKey{CallID: "c1", FromTag: "ft"})
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Streams[0].Caller.ExpectedFrom; !slices.Equal(got, tc.want) {
				t.Errorf("caller expected from %v, want %v", got, tc.want)
			}
		})
	}
}
