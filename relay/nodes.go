package relay

import (
	"errors"
	"fmt"

	"sipanchor/media"
)

// What the control plane reads of the engine in use, whichever it is:
// both engines implement the same methods (the control plane declares the
// interface), so it never asks which engine runs.

// NodeInfo is one relay node.
type NodeInfo struct {
	Name   string // "local" (builtin), "udp:10.0.0.5:2223" (rtpengine)
	Set    string // "default" (builtin), the set id (rtpengine)
	Weight int
	// Enabled: the node takes new calls (neither disabled by the control
	// plane nor found dead).
	Enabled bool
	// AdminDisabled: the control plane disabled it; only it enables it again.
	AdminDisabled bool
	// Down: the node stopped answering; it comes back when it answers a ping.
	Down bool
	// Sessions on the node now: the builtin engine's media sessions (one
	// per anchored branch), an rtpengine node's calls.
	Sessions int
}

// Placement is where a call's media is relayed.
type Placement struct {
	Set, Node string
}

// ErrUnknownNode: no relay node has that name.
var ErrUnknownNode = errors.New("no such relay node")

// Traffic is the builtin engine's packet totals since start.
type Traffic = media.Totals

// The builtin engine is one node in one set.
const (
	BuiltinEngine = "builtin"
	BuiltinSet    = "default"
	BuiltinNode   = "local"
)

// Name is the engine's name in the API and config.
func (b *Builtin) Name() string { return BuiltinEngine }

// Nodes is the builtin engine's one node.
func (b *Builtin) Nodes() []NodeInfo {
	off := b.off.Load()
	return []NodeInfo{{Name: BuiltinNode, Set: BuiltinSet, Weight: 1, Enabled: !off, AdminDisabled: off, Sessions: b.relay.Count()}}
}

// SetEnabled disables (or enables again) the one node: new calls are not
// anchored while it is off (calls in progress keep their media). The
// change is passed to the hook set by OnEnabled.
func (b *Builtin) SetEnabled(node string, on bool) error {
	if node != BuiltinNode {
		return fmt.Errorf("%q (the builtin engine is one node: %s): %w", node, BuiltinNode, ErrUnknownNode)
	}
	b.off.Store(!on)
	if f := b.onEnabled.Load(); f != nil {
		(*f)(on)
	}
	return nil
}

// OnEnabled installs what SetEnabled tells: the dialog layer stops
// engaging new calls while the node is off.
func (b *Builtin) OnEnabled(f func(on bool)) { b.onEnabled.Store(&f) }

// Placement: every call of the builtin engine is on its one node.
func (b *Builtin) Placement(k SessionKey) (Placement, bool) {
	b.mu.Lock()
	_, ok := b.calls[callID(k)]
	b.mu.Unlock()
	return Placement{Set: BuiltinSet, Node: BuiltinNode}, ok
}

// PortPairs is how many RTP/RTCP port pairs are in use, of how many.
func (b *Builtin) PortPairs() (used, total int) { return b.relay.PortPairs() }

// Traffic is what the relay forwarded and dropped since start.
func (b *Builtin) Traffic() Traffic {
	return b.relay.Totals()
}
