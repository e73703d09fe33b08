package control

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"sipanchor/dialog"
	"sipanchor/relay"
)

// Session is one anchored call as the API shows it.
type Session struct {
	CallID    string              `json:"call_id"`
	State     string              `json:"state"`
	Engine    string              `json:"engine"`
	Set       string              `json:"set"`
	Node      string              `json:"node"`
	AgeS      int                 `json:"age_s"`
	Created   time.Time           `json:"created"`
	Answered  time.Time           `json:"answered,omitzero"`
	Caller    Leg                 `json:"caller"`
	Callee    Leg                 `json:"callee"`
	Streams   []relay.StreamStats `json:"streams"`
	Diagnosis []string            `json:"diagnosis,omitempty"`
}

// Leg is one side of a session.
type Leg struct {
	URI   string `json:"uri"`
	Tag   string `json:"tag"`
	Flags string `json:"flags"`
}

// sessionsOf builds the API view of the engaged dialogs matching filters
// (engine, set, node, callid): a call matches where it is relayed.
func (a *api) sessionsOf(ctx context.Context, f map[string]string) []Session {
	out := []Session{}
	if f["engine"] != "" && f["engine"] != a.Relay.Name() {
		return out
	}
	for _, d := range a.Dialogs.All() {
		info := d.Info()
		if !info.Engaged || (f["callid"] != "" && f["callid"] != info.CallID) {
			continue
		}
		if f["set"] != "" || f["node"] != "" {
			pl, ok := a.Relay.Placement(info.Key)
			if !ok || (f["set"] != "" && f["set"] != pl.Set) || (f["node"] != "" && f["node"] != pl.Node) {
				continue
			}
		}
		out = append(out, a.view(ctx, info, false))
	}
	return out
}

func (a *api) view(ctx context.Context, info dialog.Info, diagnose bool) Session {
	pl, _ := a.Relay.Placement(info.Key)
	s := Session{CallID: info.CallID, State: info.State, Engine: a.Relay.Name(), Set: pl.Set, Node: pl.Node,
		AgeS: int(time.Since(info.Created).Seconds()), Created: info.Created, Answered: info.Answered,
		Caller:  Leg{URI: info.Caller.URI, Tag: info.Caller.Tag, Flags: fmt.Sprintf("%+v", info.Flags[0])},
		Callee:  Leg{URI: info.Callee.URI, Tag: info.Callee.Tag, Flags: fmt.Sprintf("%+v", info.Flags[1])},
		Streams: []relay.StreamStats{}}
	if info.Branch != "" {
		if st, err := a.Dialogs.Engine().Query(ctx, info.Key); err == nil {
			s.Streams = st.Streams
		}
	}
	if diagnose {
		s.Diagnosis = diagnosis(info, s.Streams, time.Now())
	}
	return s
}

func (a *api) sessions(w http.ResponseWriter, r *http.Request) {
	f, err := filters(r, "engine", "set", "node", "callid")
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, a.sessionsOf(r.Context(), f))
}

func (a *api) session(w http.ResponseWriter, r *http.Request) {
	for _, d := range a.Dialogs.ByCallID(r.PathValue("callid")) {
		if info := d.Info(); info.Engaged {
			writeJSON(w, http.StatusOK, a.view(r.Context(), info, true))
			return
		}
	}
	fail(w, http.StatusNotFound, "no anchored call with call-id "+r.PathValue("callid"))
}

// diagnosis says in plain words how media flows each way, aiming at the
// most common question: why is the audio one-way?
func diagnosis(info dialog.Info, streams []relay.StreamStats, now time.Time) []string {
	var out []string
	since := info.Answered
	what := "answered"
	if since.IsZero() {
		since, what = info.Created, "offered"
	}
	for _, st := range streams {
		prefix := ""
		if len(streams) > 1 {
			prefix = fmt.Sprintf("stream %d: ", st.Index)
		}
		for _, dir := range []struct {
			from, to string
			src, dst relay.EndpointStats
		}{{"caller", "callee", st.Caller, st.Callee}, {"callee", "caller", st.Callee, st.Caller}} {
			src := dir.src
			switch {
			case src.PacketsIn == 0:
				out = append(out, fmt.Sprintf("%s%s has sent no media since the call was %s %s ago", prefix, dir.from, what, dur(now.Sub(since))))
			case src.LastPacket.IsZero():
				out = append(out, fmt.Sprintf("%s%s has sent %d packets (no packet time reported by the relay)", prefix, dir.from, src.PacketsIn))
			case now.Sub(src.LastPacket) > 3*time.Second:
				out = append(out, fmt.Sprintf("%s%s has sent nothing for %s", prefix, dir.from, dur(now.Sub(src.LastPacket))))
			default:
				out = append(out, fmt.Sprintf("%s%s → %s: media flowing (%d packets relayed, %d lost, jitter %.1f ms)",
					prefix, dir.from, dir.to, dir.dst.PacketsOut, src.Lost, src.JitterMS))
			}
			if src.Latched != "" && src.SDPAddr != "" && src.Latched != src.SDPAddr {
				out = append(out, fmt.Sprintf("%s%s's packets arrive from %s but its SDP says %s (NAT, latched)", prefix, dir.from, src.Latched, src.SDPAddr))
			}
			if n := src.Strangers + src.Unexpected; n > 0 {
				line := fmt.Sprintf("%spackets from a stranger to %s's port dropped: %d", prefix, dir.from, n)
				if src.Unexpected > 0 {
					line += fmt.Sprintf(" (%d from an IP %s is not expected to send from)", src.Unexpected, dir.from)
				}
				out = append(out, line)
			}
			if src.Unsent > 0 {
				out = append(out, fmt.Sprintf("%s%d packets from %s had nowhere to go: %s's address was not known yet", prefix, src.Unsent, dir.from, dir.to))
			}
		}
	}
	if len(streams) == 0 {
		out = append(out, "no media streams: the call has no relay session")
	}
	return out
}

func dur(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%d s", int(d.Seconds()))
	}
	return d.Round(time.Second).String()
}
