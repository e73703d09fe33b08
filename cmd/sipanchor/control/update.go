package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

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
func (a *api) parseUpdate(r *http.Request) (*updateRequest, *[2]relay.LegFlags, error) {
	var u updateRequest
	b, err := readBody(r)
	if err != nil {
		return nil, nil, err
	}
	if len(b) > 0 {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&u); err != nil {
			return nil, nil, errors.New("bad JSON: " + err.Error())
		}
		if _, err := dec.Token(); err != io.EOF {
			// Decode reads one value: "{}x" or "{} {...}" would pass.
			return nil, nil, errors.New("bad JSON: more after the object")
		}
	}
	if err := a.checkTarget(&u); err != nil {
		return nil, nil, err
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
	u, flags, err := a.parseUpdate(r)
	if err != nil {
		fail(w, bodyStatus(err), err.Error())
		return
	}
	id := r.PathValue("callid")
	if err := a.staysPut(u, id); err != nil {
		fail(w, http.StatusConflict, err.Error())
		return
	}
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
	u, flags, err := a.parseUpdate(r)
	if err != nil {
		fail(w, bodyStatus(err), err.Error())
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
		if err := a.staysPut(u, s.CallID); err != nil {
			res.Moved, res.Error = false, err.Error()
		} else if err := a.Proxy.Move(r.Context(), s.CallID, flags); err != nil {
			res.Moved, res.Error = false, err.Error()
		}
		out = append(out, res)
	}
	writeJSON(w, http.StatusOK, out)
}

// checkTarget: an engine, set or node named in an update body must exist.
func (a *api) checkTarget(u *updateRequest) error {
	if u.Engine != "" && u.Engine != a.Relay.Name() {
		return errors.New("unknown engine " + u.Engine + " (the engine in use is " + a.Relay.Name() + ")")
	}
	if u.Set == "" && u.Node == "" {
		return nil
	}
	var names []string
	for _, n := range a.Relay.Nodes() {
		if (u.Set == "" || u.Set == n.Set) && (u.Node == "" || u.Node == n.Name) {
			return nil
		}
		names = append(names, "set "+n.Set+" node "+n.Name)
	}
	return errors.New("unknown set/node " + strings.TrimSpace(u.Set+" "+u.Node) + " (configured: " + strings.Join(names, ", ") + ")")
}

// staysPut: a move re-anchors a call on the node that holds it (a call
// stays on its node for its whole life); a body asking for another set or
// node is refused rather than ignored.
func (a *api) staysPut(u *updateRequest, callID string) error {
	if u.Set == "" && u.Node == "" {
		return nil
	}
	for _, d := range a.Dialogs.ByCallID(callID) {
		pl, ok := a.Relay.Placement(d.Info().Key)
		if ok && (u.Set != "" && u.Set != pl.Set || u.Node != "" && u.Node != pl.Node) {
			return errors.New("call " + callID + " is on set " + pl.Set + " node " + pl.Node + ": moving a call to another node is not supported")
		}
	}
	return nil
}
