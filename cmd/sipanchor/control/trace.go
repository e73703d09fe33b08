package control

import (
	"net/http"

	"sipanchor/sip"
)

// CallTraces is the SIP message trace of each call ([trace]);
// sip.Proxy implements it.
type CallTraces interface {
	// Trace is the messages of the call with that Call-ID, oldest first;
	// nil when none are kept.
	Trace(callID string) []sip.TraceEntry
}

// trace is a call's SIP ladder: every message sipanchor received and sent
// for it, oldest first, as sip.TraceEntry says.
func (a *api) trace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("callid")
	var es []sip.TraceEntry
	if a.Traces != nil {
		es = a.Traces.Trace(id)
	}
	if len(es) == 0 {
		fail(w, http.StatusNotFound, "no SIP trace for call-id "+id+
			": never seen, pushed out by newer calls ([trace] calls), or capture off ([trace] calls = 0)")
		return
	}
	writeJSON(w, http.StatusOK, es)
}
