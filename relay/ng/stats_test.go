package ng

import (
	"testing"
	"time"

	"sipanchor/relay"
)

// TestStatsOfLastPacket: rtpengine's query gives each stream's "last
// packet" (unix seconds); a stream that received packets reports it, one
// that received none does not (rtpengine sets it at creation).
func TestStatsOfLastPacket(t *testing.T) {
	stream := func(port, packets, last int64) map[string]any {
		return map[string]any{"local port": port, "last packet": last,
			"stats": map[string]any{"packets": packets, "bytes": packets * 172}}
	}
	tag := func(s map[string]any) map[string]any {
		return map[string]any{"medias": []any{map[string]any{"streams": []any{s}}}}
	}
	rep := map[string]any{"result": "ok", "created": int64(1795359800), "tags": map[string]any{
		"ft": tag(stream(44000, 25, 1795359821)),
		"tt": tag(stream(44010, 0, 1795359800)),
	}}
	st := statsOf(relay.SessionKey{CallID: "c", FromTag: "ft", ToTag: "tt"}, rep)
	if len(st.Streams) != 1 {
		t.Fatalf("streams: %+v", st.Streams)
	}
	if got := st.Streams[0].Caller.LastPacket; !got.Equal(time.Unix(1795359821, 0)) {
		t.Errorf("caller last packet %v", got)
	}
	if got := st.Streams[0].Callee.LastPacket; !got.IsZero() {
		t.Errorf("callee sent nothing but has last packet %v", got)
	}
}
