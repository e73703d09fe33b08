package control

import (
	"strings"
	"testing"
	"time"

	"sipanchor/dialog"
	"sipanchor/relay"
)

func TestDiagnosis(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	info := dialog.Info{Created: now.Add(-30 * time.Second), Answered: now.Add(-14 * time.Second)}
	flowing := relay.EndpointStats{PacketsIn: 500, PacketsOut: 480, LastPacket: now.Add(-20 * time.Millisecond)}
	tests := []struct {
		name           string
		caller, callee relay.EndpointStats
		want           []string
	}{
		{"both flowing", flowing, flowing, []string{"caller → callee: media flowing (480 packets relayed", "callee → caller: media flowing"}},
		{"callee silent since answer", flowing, relay.EndpointStats{}, []string{"callee has sent no media since the call was answered 14 s ago"}},
		{"caller stopped", relay.EndpointStats{PacketsIn: 10, LastPacket: now.Add(-9 * time.Second)}, flowing, []string{"caller has sent nothing for 9 s"}},
		{"NAT latched", relay.EndpointStats{PacketsIn: 5, LastPacket: now, Latched: "198.51.100.7:4000", SDPAddr: "192.168.1.50:4000"}, flowing,
			[]string{"caller's packets arrive from 198.51.100.7:4000 but its SDP says 192.168.1.50:4000 (NAT, latched)"}},
		{"strangers", relay.EndpointStats{PacketsIn: 5, LastPacket: now, Strangers: 212}, flowing, []string{"packets from a stranger to caller's port dropped: 212"}},
		{"unexpected source", relay.EndpointStats{PacketsIn: 5, LastPacket: now, Strangers: 2, Unexpected: 40}, flowing, []string{"packets from a stranger to caller's port dropped: 42 (40 from an IP caller is not expected to send from)"}},
		{"nowhere to send", relay.EndpointStats{PacketsIn: 5, LastPacket: now, Unsent: 3}, relay.EndpointStats{}, []string{"3 packets from caller had nowhere to go: callee's address was not known yet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(diagnosis(info, []relay.StreamStats{{Caller: tt.caller, Callee: tt.callee}}, now), "\n")
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("want %q in:\n%s", w, got)
				}
			}
		})
	}
	if got := diagnosis(info, nil, now); len(got) != 1 || !strings.Contains(got[0], "no relay session") {
		t.Errorf("no streams: %q", got)
	}
}
