package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"sipanchor/dialog"
)

// Event is what /api/v1/events streams and the webhook receives.
type Event struct {
	Type    string    `json:"type"` // call.start, call.answer, call.end, media.timeout, relay.node
	CallID  string    `json:"call_id,omitempty"`
	Time    time.Time `json:"time"`
	Caller  string    `json:"caller,omitempty"`
	Callee  string    `json:"callee,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Engaged bool      `json:"engaged,omitempty"`
	Node    string    `json:"node,omitempty"`
	Enabled bool      `json:"enabled,omitempty"`
}

// FromDialog converts a dialog event.
func FromDialog(e dialog.Event) Event {
	return Event{Type: e.Type, CallID: e.CallID, Time: e.Time, Caller: e.Caller, Callee: e.Callee, Reason: e.Reason, Engaged: e.Engaged}
}

// Events fans events out to SSE subscribers and to a webhook. Publishing
// never blocks the call path: a subscriber or webhook that cannot keep
// up loses events, which are counted and logged.
type Events struct {
	log     *slog.Logger
	mu      sync.Mutex
	subs    map[chan Event]struct{}
	hook    chan Event
	dropped atomic.Uint64
	wg      sync.WaitGroup
}

// NewEvents starts the webhook sender when url is not empty; Close stops it.
func NewEvents(url string, log *slog.Logger) *Events {
	e := &Events{log: log, subs: map[chan Event]struct{}{}}
	if url != "" {
		e.hook = make(chan Event, 1024)
		e.wg.Go(func() { e.sendHooks(url) })
	}
	return e
}

// Publish hands an event to every subscriber and the webhook.
func (e *Events) Publish(ev Event) {
	if e == nil {
		return
	}
	e.mu.Lock()
	for ch := range e.subs {
		select {
		case ch <- ev:
		default:
			e.drop("a slow event subscriber")
		}
	}
	e.mu.Unlock()
	if e.hook != nil {
		select {
		case e.hook <- ev:
		default:
			e.drop("the webhook")
		}
	}
}

func (e *Events) drop(who string) {
	if n := e.dropped.Add(1); n == 1 || n%1000 == 0 {
		e.log.Warn("events dropped for "+who, "dropped", n)
	}
}

func (e *Events) subscribe() chan Event {
	ch := make(chan Event, 256)
	e.mu.Lock()
	e.subs[ch] = struct{}{}
	e.mu.Unlock()
	return ch
}

func (e *Events) unsubscribe(ch chan Event) {
	e.mu.Lock()
	delete(e.subs, ch)
	e.mu.Unlock()
}

func (e *Events) sendHooks(url string) {
	client := &http.Client{Timeout: 3 * time.Second}
	for ev := range e.hook {
		b, _ := json.Marshal(ev)
		resp, err := client.Post(url, "application/json", bytes.NewReader(b))
		if err != nil {
			e.log.Warn("webhook failed", "type", ev.Type, "call_id", ev.CallID, "err", err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			e.log.Warn("webhook refused", "type", ev.Type, "call_id", ev.CallID, "status", resp.StatusCode)
		}
	}
}

// Close stops the webhook sender after what is queued.
func (e *Events) Close() {
	if e.hook != nil {
		close(e.hook)
	}
	e.wg.Wait()
}

// events is GET /api/v1/events, a server-sent-event stream.
func (a *api) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		fail(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	ch := a.Events.subscribe()
	defer a.Events.unsubscribe(ch)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": sipanchor events\n\n")
	fl.Flush()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	ctx := r.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keep.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case ev := <-ch:
			b, _ := json.Marshal(ev)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, b)
		}
		fl.Flush()
	}
}

var _ = context.Background
