package ng

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"sipanchor/relay"
)

// A call stays on its node for its whole life; which node that is must
// outlive sipanchor, or after a restart a re-INVITE's offer would open the
// call again on whichever node the choice falls on, and the BYE's delete
// would miss the node that holds it.

// Binding is one call's node.
type Binding struct {
	CallID, FromTag string
	Set             int
	Node            string // the node's name, "udp:HOST:PORT"
}

// BindingStore keeps bindings across restarts. The client saves one when a
// call is first placed, removes it when the call ends, and loads them all
// when it starts.
type BindingStore interface {
	Save(ctx context.Context, b Binding) error
	Remove(ctx context.Context, callID, fromTag string) error
	Load(ctx context.Context) ([]Binding, error)
}

// storeTimeout bounds one binding write: the call path waits for it.
const storeTimeout = 5 * time.Second

// restore rebinds the saved calls to their nodes. A node no longer
// configured is kept, outside the sets, for the calls it holds.
func (c *Client) restore(ctx context.Context) error {
	if c.cfg.Bindings == nil {
		return nil
	}
	bs, err := c.cfg.Bindings.Load(ctx)
	if err != nil {
		return fmt.Errorf("restoring rtpengine call bindings: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range bs {
		n := c.nodeLocked(b.Set, b.Node)
		if n == nil {
			if n, err = ParseNode(b.Node); err != nil {
				c.log.Warn("saved call on an unreadable node skipped", "call_id", b.CallID, "node", b.Node, "err", err)
				continue
			}
			n.Set = b.Set
		}
		k := relay.SessionKey{CallID: b.CallID, FromTag: b.FromTag}
		c.bound[callKey(k)] = n
		c.sessions[callKey(k)] = &clientSession{key: k, node: n, done: make(chan struct{})}
	}
	if len(bs) > 0 {
		c.log.Info("rtpengine calls restored to their nodes", "calls", len(bs))
	}
	return nil
}

// nodeLocked finds a configured node by set and name. Call with c.mu held.
func (c *Client) nodeLocked(set int, name string) *Node {
	if s := c.sets[set]; s != nil {
		for _, n := range s.nodes {
			if n.Name == name {
				return n
			}
		}
	}
	return nil
}

func (c *Client) saveBinding(k relay.SessionKey, n *Node) {
	if c.cfg.Bindings == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := c.cfg.Bindings.Save(ctx, Binding{CallID: k.CallID, FromTag: k.FromTag, Set: n.Set, Node: n.Name}); err != nil {
		c.log.Error("rtpengine call binding not saved: after a restart its offers may go to another node", "call_id", k.CallID, "node", n.Name, "err", err)
	}
}

func (c *Client) removeBinding(k relay.SessionKey) {
	if c.cfg.Bindings == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := c.cfg.Bindings.Remove(ctx, k.CallID, k.FromTag); err != nil {
		c.log.Warn("rtpengine call binding not removed", "call_id", k.CallID, "err", err)
	}
}

var _ relay.Persister = (*Client)(nil)

// Export is a call's binding, saved with its dialog.
func (c *Client) Export(ctx context.Context, k relay.SessionKey) ([]byte, error) {
	c.mu.Lock()
	n := c.bound[callKey(k)]
	c.mu.Unlock()
	if n == nil {
		return nil, fmt.Errorf("%s: %w", k, relay.ErrNoSession)
	}
	return json.Marshal(Binding{CallID: k.CallID, FromTag: k.FromTag, Set: n.Set, Node: n.Name})
}

// Import gives a restored dialog the session of its call, so that
// rtpengine's media timeout still ends it. The binding normally came back
// from the store already; the dialog's copy serves when it did not.
func (c *Client) Import(ctx context.Context, k relay.SessionKey, state []byte) (relay.Session, error) {
	key := callKey(k)
	c.mu.Lock()
	if s := c.sessions[key]; s != nil {
		c.mu.Unlock()
		return s, nil
	}
	c.mu.Unlock()
	var b Binding
	if err := json.Unmarshal(state, &b); err != nil || b.Node == "" {
		return nil, fmt.Errorf("rtpengine binding of %s: %q", k, state)
	}
	n, err := ParseNode(b.Node)
	c.mu.Lock()
	if found := c.nodeLocked(b.Set, b.Node); found != nil {
		n, err = found, nil
	}
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	n.Set = b.Set
	s := &clientSession{key: relay.SessionKey{CallID: k.CallID, FromTag: k.FromTag}, node: n, done: make(chan struct{})}
	c.bound[key], c.sessions[key] = n, s
	c.mu.Unlock()
	c.saveBinding(k, n)
	return s, nil
}
