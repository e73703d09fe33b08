package ng

import (
	"math"
	"net/netip"
	"time"

	"sipanchor/relay"
)

// statsOf maps an rtpengine query reply to relay.Stats: the first media of
// the caller's and the callee's tag.
func statsOf(k relay.SessionKey, rep map[string]any) *relay.Stats {
	st := &relay.Stats{ID: k.String()}
	if c, ok := rep["created"].(int64); ok {
		st.Created = time.Unix(c, 0)
	}
	tags, _ := rep["tags"].(map[string]any)
	ep := func(tag string) (rtp, rtcp relay.EndpointStats, ok bool) {
		t, _ := tags[tag].(map[string]any)
		medias, _ := t["medias"].([]any)
		if len(medias) == 0 {
			return rtp, rtcp, false
		}
		m, _ := medias[0].(map[string]any)
		streams, _ := m["streams"].([]any)
		for i, s := range streams {
			sm, _ := s.(map[string]any)
			var e relay.EndpointStats
			e.Port = int(count(sm["local port"], 65535))
			if stats, ok := sm["stats"].(map[string]any); ok {
				e.PacketsIn, e.BytesIn = count(stats["packets"], math.MaxInt64), count(stats["bytes"], math.MaxInt64)
			}
			if last, ok := sm["last packet"].(int64); ok && last > 0 && e.PacketsIn > 0 {
				e.LastPacket = time.Unix(last, 0) // whole seconds: "sent nothing for N s" is right to ±1 s
			}
			if end, ok := sm["endpoint"].(map[string]any); ok {
				addr, _ := end["address"].(string)
				if a, err := netip.ParseAddr(addr); err == nil {
					e.Latched = netip.AddrPortFrom(a, uint16(count(end["port"], 65535))).String()
				}
			}
			if i == 0 {
				rtp = e
			} else if i == 1 {
				rtcp = e
			}
		}
		return rtp, rtcp, true
	}
	a, artcp, okA := ep(k.FromTag)
	b, brtcp, okB := ep(k.ToTag)
	if okA || okB {
		st.Streams = []relay.StreamStats{{Caller: a, CallerRTCP: artcp, Callee: b, CalleeRTCP: brtcp}}
	}
	return st
}

// count reads a reply's integer as a counter or port up to max; anything
// else (a negative, too large, not an integer) is 0, never a wrapped value.
func count(v any, max int64) uint64 {
	n, ok := v.(int64)
	if !ok || n < 0 || n > max {
		return 0
	}
	return uint64(n)
}
