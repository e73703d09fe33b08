package ng

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"sipanchor/relay"
)

// Client is a relay.Engine that drives rtpengine nodes over NG, as the
// OpenSIPS/Kamailio rtpengine modules do: nodes in sets with weights, a
// call kept on its node for its whole life, failover of new calls when a
// node stops answering, and background pings that bring it back.
//
// rtpengine ends a call whose media stopped on its own (its --timeout)
// and, in Debian's build, tells nobody but an XMLRPC listener; so the
// client polls each call with `query`, and a call rtpengine no longer
// knows is ended as a media timeout.
type Client struct {
	cfg  ClientConfig
	log  *slog.Logger
	conn *net.UDPConn

	mu       sync.Mutex
	sets     map[int]*nodeSet
	pending  map[string]chan map[string]any // by cookie
	bound    map[string]*Node               // call (Call-ID, From-tag) → its node
	sessions map[string]*clientSession      // by call

	changes uint64 // node status changes (under mu)

	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ relay.Engine = (*Client)(nil)

// ErrClosed ends the sessions of a closed client (not a media timeout:
// the calls go on at their nodes).
var ErrClosed = errors.New("rtpengine client closed")

// ClientConfig configures a Client.
type ClientConfig struct {
	Sets       []SetConfig
	Timeout    time.Duration // per attempt (rtpengine_tout)
	Retries    int           // attempts per node (rtpengine_retr)
	DisableFor time.Duration // a silent node is skipped this long (disable_timeout)
	ProbeEvery time.Duration // disabled nodes are pinged this often (timer_interval)
	PollEvery  time.Duration // each call is queried this often, to see media timeouts
	Log        *slog.Logger
	// OnNode, if set, is told when a node goes down or comes back.
	OnNode func(node string, up bool)
	// Bindings, if set, keeps which node holds each call across restarts.
	Bindings BindingStore
	// StrictSource asks every offer and answer for rtpengine's
	// strict-source ([media] latch = "strict"): once a stream has learnt
	// its endpoint, packets from anywhere else are dropped, not forwarded.
	StrictSource bool
}

// SetConfig is one set of nodes, "udp:HOST:PORT=WEIGHT" (rtpengine_sock).
type SetConfig struct {
	ID    int
	Nodes []string
}

// Node is one rtpengine.
type Node struct {
	Name     string // as configured, "udp:127.0.0.1:2223"
	Addr     netip.AddrPort
	Weight   int
	Set      int
	disabled time.Time // skipped until then (found dead)
	down     bool      // found dead; the prober brings it back
	adminOff bool      // disabled by the control plane until it enables it
}

type nodeSet struct {
	id    int
	nodes []*Node
}

// ParseNode reads "udp:HOST:PORT=WEIGHT" (weight 1 when omitted).
func ParseNode(s string) (*Node, error) {
	spec, w, hasW := strings.Cut(s, "=")
	weight := 1
	if hasW {
		n, err := strconv.Atoi(w)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("node %q: bad weight %q", s, w)
		}
		weight = n
	}
	hostport, ok := strings.CutPrefix(spec, "udp:")
	if !ok {
		return nil, fmt.Errorf("node %q: want udp:HOST:PORT[=WEIGHT]", s)
	}
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		addrs, lerr := net.DefaultResolver.LookupNetIP(context.Background(), "ip", strings.Split(hostport, ":")[0])
		host, port, serr := net.SplitHostPort(hostport)
		if lerr != nil || serr != nil || len(addrs) == 0 || host == "" {
			return nil, fmt.Errorf("node %q: %q is not HOST:PORT", s, hostport)
		}
		p, perr := strconv.Atoi(port)
		if perr != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("node %q: bad port", s)
		}
		ap = netip.AddrPortFrom(addrs[0].Unmap(), uint16(p))
	}
	return &Node{Name: spec, Addr: ap, Weight: weight}, nil
}

// NewClient opens the client's socket and starts its prober and poller.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 1
	}
	if cfg.DisableFor <= 0 {
		cfg.DisableFor = time.Minute
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = time.Second
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = discard()
	}
	c := &Client{cfg: cfg, log: cfg.Log, sets: map[int]*nodeSet{}, pending: map[string]chan map[string]any{},
		bound: map[string]*Node{}, sessions: map[string]*clientSession{}, stop: make(chan struct{})}
	for _, sc := range cfg.Sets {
		set := &nodeSet{id: sc.ID}
		for _, s := range sc.Nodes {
			n, err := ParseNode(s)
			if err != nil {
				return nil, err
			}
			n.Set = sc.ID
			set.nodes = append(set.nodes, n)
		}
		if len(set.nodes) == 0 {
			return nil, fmt.Errorf("relay set %d has no nodes", sc.ID)
		}
		c.sets[sc.ID] = set
	}
	if len(c.sets) == 0 {
		return nil, errors.New("no rtpengine sets configured")
	}
	if err := c.restore(context.Background()); err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		return nil, err
	}
	c.conn = conn
	c.wg.Go(c.read)
	c.wg.Go(c.background)
	return c, nil
}

// Close stops the client. Calls on the nodes are left as they are; their
// sessions here end with ErrClosed. Close may be called more than once.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.stop)
		err = c.conn.Close()
		c.wg.Wait()
		c.mu.Lock()
		ss := c.sessions
		c.sessions = map[string]*clientSession{}
		c.mu.Unlock()
		for _, s := range ss {
			s.end(ErrClosed)
		}
	})
	return err
}

func (c *Client) read() {
	buf := make([]byte, 65535)
	for {
		n, _, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if err := c.deliver(buf[:n]); err != nil {
			c.log.Warn("unreadable NG reply", "err", err)
		}
	}
}

// deliver hands a reply datagram to the command waiting for its cookie;
// one that does not parse reaches no one (the command keeps waiting).
func (c *Client) deliver(b []byte) error {
	cookie, d, err := ParseMessage(b)
	if err != nil {
		return err
	}
	c.mu.Lock()
	ch := c.pending[cookie]
	delete(c.pending, cookie)
	c.mu.Unlock()
	if ch != nil {
		ch <- d
	}
	return nil
}

// errNoReply: a node did not answer within Timeout × Retries.
var errNoReply = errors.New("rtpengine did not answer")

// errNoSDP: an offer's or answer's reply says "ok" but has no SDP.
var errNoSDP = errors.New(`reply "ok" without an sdp`)

// ErrNoNode: no node of the set can take the call.
var ErrNoNode = errors.New("no rtpengine node available")

// ask sends one command to a node, resending it (same cookie: rtpengine
// answers a repeat from its cache) until a reply or Retries attempts.
func (c *Client) ask(ctx context.Context, n *Node, d map[string]any) (map[string]any, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	cookie := hex.EncodeToString(b)
	msg, err := Message(cookie, d)
	if err != nil {
		return nil, err
	}
	ch := make(chan map[string]any, 1)
	c.mu.Lock()
	c.pending[cookie] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, cookie)
		c.mu.Unlock()
	}()
	for range c.cfg.Retries {
		if _, err := c.conn.WriteToUDPAddrPort(msg, n.Addr); err != nil {
			return nil, err
		}
		t := time.NewTimer(c.cfg.Timeout)
		select {
		case r := <-ch:
			t.Stop()
			return r, nil
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("%s: %w", n.Name, errNoReply)
}

// choose picks a node for a new call: weighted among the enabled nodes of
// positive weight; weight-0 nodes only when none of those is left.
func (c *Client) choose(set int, exclude []*Node) (*Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sets[set]
	if s == nil {
		return nil, fmt.Errorf("relay set %d: %w", set, ErrNoNode)
	}
	now := time.Now()
	var cands []*Node
	total := 0
	usable := func(n *Node) bool { return !slices.Contains(exclude, n) && !n.adminOff && now.After(n.disabled) }
	for _, n := range s.nodes {
		if usable(n) && n.Weight > 0 {
			cands = append(cands, n)
			total += n.Weight
		}
	}
	if len(cands) == 0 {
		for _, n := range s.nodes {
			if usable(n) {
				return n, nil
			}
		}
		return nil, fmt.Errorf("relay set %d: %w", set, ErrNoNode)
	}
	r, _ := rand.Int(rand.Reader, big.NewInt(int64(total)))
	pick := int(r.Int64())
	for _, n := range cands {
		if pick < n.Weight {
			return n, nil
		}
		pick -= n.Weight
	}
	return cands[len(cands)-1], nil
}

func (c *Client) disable(n *Node, why error) {
	c.mu.Lock()
	n.disabled = time.Now().Add(c.cfg.DisableFor)
	was := n.down
	n.down = true
	if !was {
		c.changes++
	}
	c.mu.Unlock()
	if !was {
		c.log.Warn("rtpengine node down", "node", n.Name, "set", n.Set, "err", why, "disabled_for", c.cfg.DisableFor)
		if c.cfg.OnNode != nil {
			c.cfg.OnNode(n.Name, false)
		}
	}
}

func callKey(k relay.SessionKey) string { return k.CallID + "\x00" + k.FromTag }

// request is the NG dictionary of an offer or answer.
func request(cmd string, r *relay.Request, strict bool) map[string]any {
	d := map[string]any{"command": cmd, "call-id": r.Key.CallID, "sdp": string(r.SDP)}
	f := r.Caller
	if r.From == relay.Callee {
		f = r.Callee
	}
	// NG's from-tag is the tag of whoever sent this SDP's request; for an
	// answer, the offerer's, with to-tag the answerer's.
	switch {
	case cmd == "offer" && r.From == relay.Caller, cmd == "answer" && r.From == relay.Callee:
		d["from-tag"], d["to-tag"] = r.Key.FromTag, r.Key.ToTag
	default:
		d["from-tag"], d["to-tag"] = r.Key.ToTag, r.Key.FromTag
	}
	if d["to-tag"] == "" {
		delete(d, "to-tag")
	}
	if r.Key.ViaBranch != "" && r.Key.ToTag == "" {
		// Forked branches are told apart by via-branch until the callee's
		// tag is known; after that rtpengine goes by the tags.
		d["via-branch"] = r.Key.ViaBranch
	}
	flags := []any{}
	if !f.Symmetric {
		flags = append(flags, "asymmetric")
	}
	if f.SIPSource {
		flags = append(flags, "SIP-source-address")
	}
	if f.TrustAddress {
		flags = append(flags, "trust-address")
	}
	if f.LoopProtect {
		flags = append(flags, "loop-protect")
	}
	if strict && f.Symmetric {
		flags = append(flags, "strict-source")
	}
	if len(flags) > 0 {
		d["flags"] = flags
	}
	var replace []any
	if f.ReplaceOrigin {
		replace = append(replace, "origin")
	}
	if f.ReplaceSessionConnection {
		replace = append(replace, "session-connection")
	}
	if replace != nil {
		d["replace"] = replace
	}
	if f.ICERemove {
		d["ICE"] = "remove"
	}
	if f.RTCPMux != "" {
		d["rtcp-mux"] = []any{f.RTCPMux}
	}
	if f.MediaAddress.IsValid() {
		d["media-address"] = f.MediaAddress.String()
	}
	if r.Source.IsValid() {
		fam := "IP4"
		if r.Source.Addr().Is6() {
			fam = "IP6"
		}
		d["received-from"] = []any{fam, r.Source.Addr().String()}
	}
	return d
}

// Offer sends an offer: a new call goes to a chosen node (failing over to
// the next if one does not answer), a known call to its node.
func (c *Client) Offer(ctx context.Context, r *relay.Request) (*relay.Reply, error) {
	return c.send(ctx, "offer", r)
}

// Answer sends an answer to the call's node.
func (c *Client) Answer(ctx context.Context, r *relay.Request) (*relay.Reply, error) {
	return c.send(ctx, "answer", r)
}

func (c *Client) send(ctx context.Context, cmd string, r *relay.Request) (*relay.Reply, error) {
	key := callKey(r.Key)
	c.mu.Lock()
	n := c.bound[key]
	set := c.defaultSetLocked()
	c.mu.Unlock()
	d := request(cmd, r, c.cfg.StrictSource)
	if n == nil {
		if cmd != "offer" {
			return nil, fmt.Errorf("answer for %s: %w", r.Key, relay.ErrNoSession)
		}
		if r.Set != "" {
			id, err := strconv.Atoi(r.Set)
			if err != nil {
				return nil, fmt.Errorf("relay set %q: %w", r.Set, ErrNoNode)
			}
			set = id
		}
		var tried []*Node
		for {
			cand, err := c.choose(set, tried)
			if err != nil {
				return nil, err
			}
			rep, err := c.ask(ctx, cand, d)
			if errors.Is(err, errNoReply) {
				c.disable(cand, err)
				tried = append(tried, cand)
				continue
			}
			if err != nil {
				return nil, err
			}
			n = cand
			return c.reply(r, n, key, rep)
		}
	}
	rep, err := c.ask(ctx, n, d)
	if err != nil {
		if errors.Is(err, errNoReply) {
			c.disable(n, err)
		}
		return nil, err
	}
	return c.reply(r, n, key, rep)
}

func (c *Client) reply(r *relay.Request, n *Node, key string, rep map[string]any) (*relay.Reply, error) {
	if rep["result"] != "ok" {
		reason, _ := rep["error-reason"].(string)
		return nil, &relay.SDPError{Err: fmt.Errorf("rtpengine %s: %s", n.Name, reason)}
	}
	sdp, _ := rep["sdp"].(string)
	if sdp == "" {
		// Relaying the message with no body would turn an offer into a
		// late offer, or an answer into none.
		return nil, fmt.Errorf("rtpengine %s: %w", n.Name, errNoSDP)
	}
	c.mu.Lock()
	fresh := c.bound[key] == nil
	c.bound[key] = n
	s := c.sessions[key]
	if s == nil {
		s = &clientSession{key: r.Key, node: n, done: make(chan struct{})}
		c.sessions[key] = s
	}
	c.mu.Unlock()
	if fresh {
		c.saveBinding(r.Key, n) // before the SDP naming the node leaves
	}
	return &relay.Reply{SDP: []byte(sdp), Session: s}, nil
}

// defaultSetLocked is the lowest set id, the set of calls no rule placed.
// Call with c.mu held: Reload replaces c.sets.
func (c *Client) defaultSetLocked() int {
	ids := c.setIDs()
	if len(ids) == 0 {
		return 0
	}
	return ids[0]
}

// Delete ends the call on its node (the whole call: rtpengine's delete by
// call-id and from-tag). A call the client does not know (after a
// restart) is deleted on every node of the set.
func (c *Client) Delete(ctx context.Context, r *relay.Request) error {
	if r.Key.ViaBranch != "" {
		// Branches of a forked INVITE share the call on rtpengine; the
		// losing branch's media goes with the answer's, so nothing to do.
		return nil
	}
	key := callKey(r.Key)
	c.mu.Lock()
	n := c.bound[key]
	s := c.sessions[key]
	delete(c.bound, key)
	delete(c.sessions, key)
	var nodes []*Node
	if n != nil {
		nodes = []*Node{n}
	} else if set := c.sets[c.defaultSetLocked()]; set != nil {
		nodes = set.nodes
	}
	c.mu.Unlock()
	if s != nil {
		s.end(relay.ErrNoSession)
	}
	if n != nil {
		c.removeBinding(r.Key)
	}
	d := map[string]any{"command": "delete", "call-id": r.Key.CallID, "from-tag": r.Key.FromTag}
	var errs []error
	for _, node := range nodes {
		if _, err := c.ask(ctx, node, d); err != nil {
			errs = append(errs, err)
		}
	}
	if n != nil {
		return errors.Join(errs...)
	}
	return nil
}

// Query reads a call's counters from its node in the shape of relay.Stats.
func (c *Client) Query(ctx context.Context, k relay.SessionKey) (*relay.Stats, error) {
	c.mu.Lock()
	n := c.bound[callKey(k)]
	c.mu.Unlock()
	if n == nil {
		return nil, fmt.Errorf("%s: %w", k, relay.ErrNoSession)
	}
	rep, err := c.ask(ctx, n, map[string]any{"command": "query", "call-id": k.CallID, "from-tag": k.FromTag})
	if err != nil {
		return nil, err
	}
	if rep["result"] != "ok" {
		return nil, fmt.Errorf("%s: %w", k, relay.ErrNoSession)
	}
	return statsOf(k, rep), nil
}

// clientSession is a call on an rtpengine node.
type clientSession struct {
	key  relay.SessionKey
	node *Node
	once sync.Once
	mu   sync.Mutex
	err  error
	done chan struct{}
}

func (s *clientSession) Key() relay.SessionKey { return s.key }
func (s *clientSession) Done() <-chan struct{} { return s.done }
func (s *clientSession) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *clientSession) end(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
	})
}
