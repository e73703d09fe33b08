package control

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"sipanchor/sip"
)

// metrics writes the Prometheus text exposition format (version 0.0.4).
// Every metric is documented by its HELP line.
func (a *api) metrics(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	metric := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	value := func(name string, labels []string, v float64) {
		b.WriteString(name)
		if len(labels) > 0 {
			b.WriteString("{")
			for i := 0; i+1 < len(labels); i += 2 {
				if i > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
			}
			b.WriteString("}")
		}
		b.WriteString(" ")
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		b.WriteString("\n")
	}

	c := a.Dialogs.Counters()
	metric("sipanchor_calls_active", "gauge", "Dialogs tracked now (early and confirmed).")
	value("sipanchor_calls_active", nil, float64(a.Dialogs.Count()))
	metric("sipanchor_calls_total", "counter", "Calls ended, by outcome: answered or not.")
	value("sipanchor_calls_total", []string{"outcome", "answered"}, float64(c.Answered))
	value("sipanchor_calls_total", []string{"outcome", "unanswered"}, float64(c.Unanswered))
	metric("sipanchor_media_timeouts_total", "counter", "Calls ended because their media stopped.")
	value("sipanchor_media_timeouts_total", nil, float64(c.MediaTimeouts))
	metric("sipanchor_calls_no_ack_total", "counter", "Answered calls ended because their 2xx got no ACK within 64×T1.")
	value("sipanchor_calls_no_ack_total", nil, float64(c.NoACK))

	metric("sipanchor_registrations", "gauge", "Live registrar bindings.")
	value("sipanchor_registrations", nil, float64(len(a.Proxy.Location().All(time.Now()))))

	a.relayMetrics(metric, value)

	m := a.Proxy.Metrics().Snapshot()
	metric("sipanchor_sip_requests_total", "counter", "SIP requests received, by method.")
	for _, k := range sorted(m.Requests) {
		value("sipanchor_sip_requests_total", []string{"method", k}, float64(m.Requests[k]))
	}
	metric("sipanchor_sip_responses_total", "counter", "Final SIP responses sent for requests received, by method and status.")
	keys := make([][2]string, 0, len(m.Responses))
	for k := range m.Responses {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y [2]string) int { return strings.Compare(x[0]+x[1], y[0]+y[1]) })
	for _, k := range keys {
		value("sipanchor_sip_responses_total", []string{"method", k[0], "status", k[1]}, float64(m.Responses[k]))
	}
	metric("sipanchor_sip_transaction_seconds", "histogram", "Time from a request's arrival to its final response, by method.")
	for _, method := range sorted(m.Tx) {
		h := m.Tx[method]
		for i, le := range sip.TxBuckets {
			value("sipanchor_sip_transaction_seconds_bucket", []string{"method", method, "le", strconv.FormatFloat(le, 'g', -1, 64)}, float64(h.Cumulative[i]))
		}
		value("sipanchor_sip_transaction_seconds_bucket", []string{"method", method, "le", "+Inf"}, float64(h.Cumulative[len(sip.TxBuckets)]))
		value("sipanchor_sip_transaction_seconds_sum", []string{"method", method}, h.Sum)
		value("sipanchor_sip_transaction_seconds_count", []string{"method", method}, float64(h.Count))
	}
	metric("sipanchor_sip_malformed_total", "counter", "Messages rejected before the transaction layer.")
	value("sipanchor_sip_malformed_total", nil, float64(a.Proxy.Malformed()))
	held, stateless := a.Proxy.HeldAnswers()
	metric("sipanchor_sip_held_answers", "gauge", "Server transactions kept now (64×T1 each) for final answers sipanchor made itself to out-of-dialog requests; at most 4096.")
	value("sipanchor_sip_held_answers", nil, float64(held))
	metric("sipanchor_sip_stateless_answers_total", "counter", "Final answers sipanchor made itself whose transaction was ended at once, as if sent statelessly, because 4096 were already kept (a flood).")
	value("sipanchor_sip_stateless_answers_total", nil, float64(stateless))
	banned, rate := a.Proxy.Dropped()
	metric("sipanchor_sip_dropped_total", "counter", "Messages dropped unread by the flood bans: from a banned source (banned), or the request that got its source banned (rate); TCP connections closed as soon as accepted because their source IP already had [sip] tcp_max_per_source open (tcp_per_source).")
	value("sipanchor_sip_dropped_total", []string{"reason", "banned"}, float64(banned))
	value("sipanchor_sip_dropped_total", []string{"reason", "rate"}, float64(rate))
	value("sipanchor_sip_dropped_total", []string{"reason", "tcp_per_source"}, float64(a.Proxy.TCPRefused()))
	metric("sipanchor_sip_limited_total", "counter", "New calls answered 503 with Retry-After, by the limit they hit: calls, calls_per_source, cps, overload (max_pending_invites), queue (max_queue_delay), calls_per_peer; calls_per_user is answered 486.")
	refused := a.Proxy.Refused()
	for _, l := range sip.Limits() {
		value("sipanchor_sip_limited_total", []string{"limit", l.String()}, float64(refused[l]))
	}

	metric("sipanchor_sip_queue_delay_seconds", "gauge", "How long SIP datagrams waited in each UDP listener's receive queue before being read (moving average over the last 64): the proxy's queueing delay.")
	delays := a.Proxy.QueueDelays()
	for _, k := range sorted(delays) {
		value("sipanchor_sip_queue_delay_seconds", []string{"listen", k}, delays[k].Seconds())
	}

	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

func sorted[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// relayMetrics writes the engine's: sessions and nodes for any engine,
// ports and packets for one that owns them (builtin), node status
// changes for one whose nodes fail (rtpengine).
func (a *api) relayMetrics(metric func(name, typ, help string), value func(name string, labels []string, v float64)) {
	nodes := a.Relay.Nodes()
	metric("sipanchor_relay_sessions", "gauge", "Relay sessions of the engine in use: builtin, one per anchored branch; rtpengine, calls on its nodes.")
	value("sipanchor_relay_sessions", []string{"engine", a.Relay.Name()}, float64(sessionsOn(nodes)))
	metric("sipanchor_relay_node_up", "gauge", "Relay nodes: 1 when taking new calls, 0 when disabled or not answering.")
	for _, n := range nodes {
		up := 0.0
		if n.Enabled {
			up = 1
		}
		value("sipanchor_relay_node_up", []string{"node", n.Name, "set", n.Set}, up)
	}
	metric("sipanchor_relay_node_calls", "gauge", "Relay sessions on each node: an rtpengine node's calls bound to it, the builtin node's media sessions.")
	for _, n := range nodes {
		value("sipanchor_relay_node_calls", []string{"node", n.Name, "set", n.Set}, float64(n.Sessions))
	}
	if cc, ok := a.Relay.(changeCounter); ok {
		metric("sipanchor_relay_node_changes_total", "counter", "Relay node status changes (down, or back).")
		value("sipanchor_relay_node_changes_total", nil, float64(cc.Changes()))
	}
	if pc, ok := a.Relay.(portCounter); ok {
		used, total := pc.PortPairs()
		metric("sipanchor_relay_port_pairs", "gauge", "Builtin engine: RTP/RTCP port pairs, by state.")
		value("sipanchor_relay_port_pairs", []string{"state", "used"}, float64(used))
		value("sipanchor_relay_port_pairs", []string{"state", "free"}, float64(total-used))
	}
	if tc, ok := a.Relay.(trafficCounter); ok {
		t := tc.Traffic()
		metric("sipanchor_relay_packets_total", "counter", "Builtin engine: RTP and RTCP packets relayed.")
		value("sipanchor_relay_packets_total", nil, float64(t.Packets))
		metric("sipanchor_relay_bytes_total", "counter", "Builtin engine: RTP and RTCP bytes relayed (UDP payload).")
		value("sipanchor_relay_bytes_total", nil, float64(t.Bytes))
		metric("sipanchor_relay_dropped_total", "counter", "Builtin engine: packets not relayed: from a stranger to a latched port, from an IP the side is not expected to send from (strict latching), or with no known destination.")
		value("sipanchor_relay_dropped_total", []string{"reason", "stranger"}, float64(t.Strangers))
		value("sipanchor_relay_dropped_total", []string{"reason", "unexpected_source"}, float64(t.Unexpected))
		value("sipanchor_relay_dropped_total", []string{"reason", "no_destination"}, float64(t.Unsent))
	}
}
