package ng

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"sipanchor/relay"
)

// Node management: what the control plane sees and changes, the prober
// that brings dead nodes back, and the poller that notices calls their
// node ended (rtpengine's media timeout).

// Name is the engine's name in the API and config.
func (c *Client) Name() string { return "rtpengine" }

// Nodes lists every node and its state.
func (c *Client) Nodes() []relay.NodeInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := map[*Node]int{}
	for _, n := range c.bound {
		calls[n]++
	}
	var out []relay.NodeInfo
	now := time.Now()
	for _, id := range c.setIDs() {
		for _, n := range c.sets[id].nodes {
			out = append(out, relay.NodeInfo{Name: n.Name, Set: strconv.Itoa(n.Set), Weight: n.Weight,
				Enabled: !n.adminOff && now.After(n.disabled), AdminDisabled: n.adminOff, Down: n.down, Sessions: calls[n]})
		}
	}
	return out
}

// Placement names the set and node that hold a call.
func (c *Client) Placement(k relay.SessionKey) (relay.Placement, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.bound[callKey(k)]
	if n == nil {
		return relay.Placement{}, false
	}
	return relay.Placement{Set: strconv.Itoa(n.Set), Node: n.Name}, true
}

// Reload replaces the node sets. A node kept (same name and set) keeps its
// state; calls stay on their nodes even if those are no longer listed.
// It returns the number of nodes.
func (c *Client) Reload(sets []SetConfig) (int, error) {
	fresh := map[int]*nodeSet{}
	for _, sc := range sets {
		set := &nodeSet{id: sc.ID}
		for _, s := range sc.Nodes {
			n, err := ParseNode(s)
			if err != nil {
				return 0, err
			}
			n.Set = sc.ID
			set.nodes = append(set.nodes, n)
		}
		fresh[sc.ID] = set
	}
	if len(fresh) == 0 {
		return 0, errors.New("no rtpengine sets")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	count := 0
	for id, set := range fresh {
		if old := c.sets[id]; old != nil {
			for i, n := range set.nodes {
				if j := slices.IndexFunc(old.nodes, func(o *Node) bool { return o.Name == n.Name }); j >= 0 {
					old.nodes[j].Weight = n.Weight
					set.nodes[i] = old.nodes[j]
				}
			}
		}
		count += len(set.nodes)
	}
	c.sets = fresh
	c.log.Info("rtpengine nodes reloaded", "nodes", count)
	return count, nil
}

// Changes is the number of node status changes (down or back) so far.
func (c *Client) Changes() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changes
}

// SetEnabled takes a node out of (or back into) the choice for new calls,
// from the control plane; calls on it stay. A node disabled so stays out
// until enabled so, even when the prober finds it answering.
func (c *Client) SetEnabled(name string, on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sets {
		for _, n := range s.nodes {
			if n.Name == name {
				n.adminOff = !on
				return nil
			}
		}
	}
	return fmt.Errorf("%q: %w", name, relay.ErrUnknownNode)
}

func (c *Client) setIDs() []int {
	ids := make([]int, 0, len(c.sets))
	for id := range c.sets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// background pings disabled nodes back into service and polls calls for
// rtpengine's own media timeouts.
func (c *Client) background() {
	probe := time.NewTicker(c.cfg.ProbeEvery)
	defer probe.Stop()
	poll := time.NewTicker(c.cfg.PollEvery)
	defer poll.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-probe.C:
			c.probe()
		case <-poll.C:
			c.poll()
		}
	}
}

func (c *Client) probe() {
	c.mu.Lock()
	var down []*Node
	for _, s := range c.sets {
		for _, n := range s.nodes {
			if n.down {
				down = append(down, n)
			}
		}
	}
	c.mu.Unlock()
	for _, n := range down {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout*time.Duration(c.cfg.Retries)+time.Second)
		rep, err := c.ask(ctx, n, map[string]any{"command": "ping"})
		cancel()
		if err != nil || rep["result"] != "pong" {
			continue
		}
		c.mu.Lock()
		n.down = false
		n.disabled = time.Time{} // an admin's disable (adminOff) stays
		c.changes++
		enabled := !n.adminOff
		c.mu.Unlock()
		c.log.Info("rtpengine node back", "node", n.Name, "set", n.Set, "admin_disabled", !enabled)
		if c.cfg.OnNode != nil {
			c.cfg.OnNode(n.Name, enabled)
		}
	}
}

// poll asks each call's node about it; a call the node no longer knows
// ended there (rtpengine's media timeout).
func (c *Client) poll() {
	c.mu.Lock()
	type item struct {
		key string
		s   *clientSession
	}
	var items []item
	for k, s := range c.sessions {
		items = append(items, item{k, s})
	}
	c.mu.Unlock()
	for _, it := range items {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout*time.Duration(c.cfg.Retries)+time.Second)
		rep, err := c.ask(ctx, it.s.node, map[string]any{"command": "query", "call-id": it.s.key.CallID, "from-tag": it.s.key.FromTag})
		cancel()
		if err != nil {
			continue // a silent node is the prober's business
		}
		if reason, _ := rep["error-reason"].(string); rep["result"] == "error" && strings.Contains(strings.ToLower(reason), "unknown call") {
			c.mu.Lock()
			mine := c.sessions[it.key] == it.s
			if mine {
				delete(c.sessions, it.key)
				delete(c.bound, it.key)
			}
			c.mu.Unlock()
			if mine {
				c.removeBinding(it.s.key)
			}
			c.log.Info("rtpengine no longer has the call: media timeout", "call_id", it.s.key.CallID, "node", it.s.node.Name)
			it.s.end(relay.ErrMediaTimeout)
		}
	}
}
