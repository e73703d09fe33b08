package harness

import (
	"context"
	"fmt"
	"strings"
	"time"

	"sipanchor/cmd/sipanchor/control"
	"sipanchor/dialog"
	"sipanchor/relay"
	"sipanchor/sip"
)

// Match picks a call. Every field set must match: From and To against the
// caller's and callee's URI (a user name, an AoR or a whole URI; "alice"
// matches <sip:alice@example.test>), CallID exactly.
type Match struct {
	From, To, CallID string
}

func (m Match) String() string {
	var parts []string
	for _, kv := range [][2]string{{"from", m.From}, {"to", m.To}, {"call-id", m.CallID}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}
	if len(parts) == 0 {
		return "any call"
	}
	return "a call " + strings.Join(parts, ", ")
}

func (m Match) matches(info dialog.Info) bool {
	return (m.CallID == "" || m.CallID == info.CallID) &&
		uriMatches(info.Caller.URI, m.From) && uriMatches(info.Callee.URI, m.To)
}

// uriMatches: want is empty, or the URI's user, user@host or the URI.
func uriMatches(uri, want string) bool {
	if want == "" {
		return true
	}
	u := strings.Trim(uri, "<> ")
	u = strings.TrimPrefix(strings.TrimPrefix(u, "sips:"), "sip:")
	u, _, _ = strings.Cut(u, ";")
	user, _, _ := strings.Cut(u, "@")
	return want == uri || want == u || want == user || strings.Trim(want, "<>") == strings.Trim(uri, "<>")
}

// Call is a dialog sipanchor tracks.
type Call struct {
	s    *SBC
	info dialog.Info
}

// CallID is the call's Call-ID.
func (c *Call) CallID() string { return c.info.CallID }

// State is the dialog's state when last read: "early", "confirmed", ...
func (c *Call) State() string { c.refresh(); return c.info.State }

// Anchored reports whether sipanchor relays the call's media.
func (c *Call) Anchored() bool { return c.info.Engaged }

// WaitCall waits until sipanchor tracks a call matching m.
func (s *SBC) WaitCall(m Match) *Call {
	s.t.Helper()
	var c *Call
	s.waitFor(m.String(), func() bool { c = s.find(m); return c != nil })
	return c
}

// WaitAnswered waits until a call matching m is answered (confirmed).
func (s *SBC) WaitAnswered(m Match) *Call {
	s.t.Helper()
	var c *Call
	s.waitFor("answer of "+m.String(), func() bool {
		c = s.find(m)
		return c != nil && !c.info.Answered.IsZero()
	})
	return c
}

// WaitEnded waits until sipanchor no longer tracks the call.
func (c *Call) WaitEnded() {
	c.s.t.Helper()
	c.s.waitFor("end of call "+c.info.CallID, func() bool {
		return len(c.s.srv.Dialogs().ByCallID(c.info.CallID)) == 0
	})
}

func (s *SBC) find(m Match) *Call {
	for _, d := range s.srv.Dialogs().All() {
		if info := d.Info(); m.matches(info) {
			return &Call{s: s, info: info}
		}
	}
	return nil
}

func (c *Call) refresh() {
	for _, d := range c.s.srv.Dialogs().ByCallID(c.info.CallID) {
		c.info = d.Info()
	}
}

// Streams are the relay's counters of the call's media streams, read now
// (none for a call whose media is not anchored, or that has ended).
func (c *Call) Streams() []relay.StreamStats {
	c.refresh()
	if !c.info.Engaged || c.info.Branch == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.s.srv.Dialogs().Engine().Query(ctx, c.info.Key)
	if err != nil {
		return nil
	}
	return st.Streams
}

// Diagnosis is the relay's plain-words account of the call's media, the
// same as the API's: who sent what, from where, what was dropped and why.
func (c *Call) Diagnosis() []string {
	st := c.Streams()
	return control.Diagnosis(c.info, st, time.Now())
}

func (c *Call) diagnosisText() string {
	return "  " + strings.Join(c.Diagnosis(), "\n  ")
}

// fatalf fails the test with the call's media diagnosis appended.
func (c *Call) fatalf(format string, args ...any) {
	c.s.t.Helper()
	c.s.t.Fatalf("harness: call %s: %s\nsipanchor's media diagnosis:\n%s\nits SIP messages:\n%s",
		c.info.CallID, fmt.Sprintf(format, args...), c.diagnosisText(), Ladder(c.Trace()))
}

// Trace is the SIP messages of call-id callID as sipanchor received and
// sent them, oldest first (bounded by [trace]: the first and the latest).
func (s *SBC) Trace(callID string) []sip.TraceEntry { return s.srv.Proxy().Trace(callID) }

// Trace is the call's SIP messages as sipanchor received and sent them.
func (c *Call) Trace() []sip.TraceEntry { return c.s.Trace(c.info.CallID) }

// Ladder is a trace as one line per message: time, direction, the far
// end and the first line, e.g. "12:00:01.002 in  udp 127.0.0.2:5070 INVITE sip:bob@example.test SIP/2.0".
func Ladder(trace []sip.TraceEntry) string {
	var b strings.Builder
	for _, e := range trace {
		first, _, _ := strings.Cut(e.Message, "\r\n")
		fmt.Fprintf(&b, "%s %-3s %s %s %s\n", e.Time.Format("15:04:05.000"), e.Dir, e.Transport, e.Remote, first)
	}
	return b.String()
}
