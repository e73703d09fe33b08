package control

import (
	"strings"
	"testing"
	"time"

	"sipanchor/dialog"
	"sipanchor/relay"
)

// TestDiagnosisWithoutPacketTime: an engine that counts packets but gives
// no last-packet time (rtpengine's query may not) must not be read as
// "sent nothing for 2562047h" (the zero time as a duration).
func TestDiagnosisWithoutPacketTime(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	info := dialog.Info{Created: now.Add(-30 * time.Second), Answered: now.Add(-14 * time.Second)}
	counted := relay.EndpointStats{PacketsIn: 50}
	got := strings.Join(diagnosis(info, []relay.StreamStats{{Caller: counted, Callee: counted}}, now), "\n")
	if strings.Contains(got, "2562047h") || strings.Contains(got, "sent nothing") {
		t.Errorf("diagnosis invents a silence:\n%s", got)
	}
	if !strings.Contains(got, "caller has sent 50 packets (no packet time reported by the relay)") {
		t.Errorf("diagnosis does not say what is known:\n%s", got)
	}
}
