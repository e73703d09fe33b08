package ng

import (
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
			if p, ok := sm["local port"].(int64); ok {
				e.Port = int(p)
			}
			if stats, ok := sm["stats"].(map[string]any); ok {
				pk, _ := stats["packets"].(int64)
				by, _ := stats["bytes"].(int64)
				e.PacketsIn, e.BytesIn = uint64(pk), uint64(by)
			}
			if last, ok := sm["last packet"].(int64); ok && last > 0 && e.PacketsIn > 0 {
				e.LastPacket = time.Unix(last, 0) // whole seconds: "sent nothing for N s" is right to ±1 s
			}
			if end, ok := sm["endpoint"].(map[string]any); ok {
				addr, _ := end["address"].(string)
				port, _ := end["port"].(int64)
				if a, err := netip.ParseAddr(addr); err == nil {
					e.Latched = netip.AddrPortFrom(a, uint16(port)).String()
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
