package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"sipanchor/dialog"
	"sipanchor/relay"
	"sipanchor/sip"
)

// updateRequest is the body of POST /sessions/{callid}/update and
// /sessions/update (all optional): where to move and with which flags.
type updateRequest struct {
	Engine      string            `json:"engine"`
	Set         string            `json:"set"`
	Node        string            `json:"node"`
	CallerFlags *string           `json:"caller_flags"`
	CalleeFlags *string           `json:"callee_flags"`
	Filter      map[string]string `json:"filter"` // for /sessions/update: engine, set, node, callid
}

// parseUpdate reads and checks an update body; an empty body is {}.
func parseUpdate(r *http.Request) (*updateRequest, *[2]relay.LegFlags, error) {
	var u updateRequest
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > 0 {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&u); err != nil {
			return nil, nil, errors.New("bad JSON: " + err.Error())
		}
	}
	for _, x := range []struct{ got, want, what string }{{u.Engine, engineName, "engine"}, {u.Set, setName, "set"}, {u.Node, nodeName, "node"}} {
		if x.got != "" && x.got != x.want {
			return nil, nil, errors.New("unknown " + x.what + " " + x.got + " (only " + x.want + " is configured)")
		}
	}
	if u.CallerFlags == nil && u.CalleeFlags == nil {
		return &u, nil, nil
	}
	var flags [2]relay.LegFlags
	for i, f := range []*string{u.CallerFlags, u.CalleeFlags} {
		s := ""
		if f != nil {
			s = *f
		}
		lf, err := relay.ParseFlags(s)
		if err == nil {
			err = lf.Supported()
		}
		if err != nil {
			return nil, nil, err
		}
		flags[i] = lf
	}
	return &u, &flags, nil
}

// moveStatus maps a failed move to an HTTP status.
func moveStatus(err error) int {
	switch {
	case errors.Is(err, sip.ErrNoDialog):
		return http.StatusNotFound
	case errors.Is(err, dialog.ErrBusy):
		return http.StatusConflict
	case errors.Is(err, dialog.ErrNotEngaged):
		return http.StatusConflict
	}
	return http.StatusBadGateway
}

// update is POST /api/v1/sessions/{callid}/update (rtp_relay_update_callid).
func (a *api) update(w http.ResponseWriter, r *http.Request) {
	_, flags, err := parseUpdate(r)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	id := r.PathValue("callid")
	if err := a.Proxy.Move(r.Context(), id, flags); err != nil {
		fail(w, moveStatus(err), err.Error())
		return
	}
	for _, d := range a.Dialogs.ByCallID(id) {
		writeJSON(w, http.StatusOK, a.view(r.Context(), d.Info(), true))
		return
	}
	fail(w, http.StatusGone, "call "+id+" ended during the move")
}

// updateAll is POST /api/v1/sessions/update (rtp_relay_update): every
// anchored call matching the filter is moved, one after another.
func (a *api) updateAll(w http.ResponseWriter, r *http.Request) {
	u, flags, err := parseUpdate(r)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	for k := range u.Filter {
		if k != "engine" && k != "set" && k != "node" && k != "callid" {
			fail(w, http.StatusBadRequest, "unknown filter "+k+" (allowed: engine, set, node, callid)")
			return
		}
	}
	type result struct {
		CallID string `json:"call_id"`
		Moved  bool   `json:"moved"`
		Error  string `json:"error,omitempty"`
	}
	out := []result{}
	for _, s := range a.sessionsOf(r.Context(), u.Filter) {
		res := result{CallID: s.CallID, Moved: true}
		if err := a.Proxy.Move(r.Context(), s.CallID, flags); err != nil {
			res.Moved, res.Error = false, err.Error()
		}
		out = append(out, res)
	}
	writeJSON(w, http.StatusOK, out)
}
