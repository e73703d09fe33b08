package ng

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"sipanchor/media"
	"sipanchor/relay"
)

type relayEndpointStats = media.EndpointStats

// Server answers NG commands with sipanchor's builtin engine, so that
// Kamailio's or OpenSIPS's rtpengine module can use it unchanged. Commands
// are handled one at a time in arrival order (an answer never overtakes
// its offer); a retransmitted command (same cookie) gets the cached reply
// and is not executed twice.
type Server struct {
	engine *relay.Builtin
	conn   *net.UDPConn
	allow  []netip.Prefix
	log    *slog.Logger

	mu      sync.Mutex
	calls   map[string]*call // by Call-ID
	started time.Time
	served  map[string]uint64 // commands by name

	cache   map[string]cached // by cookie
	cacheQ  []string          // cookies, oldest first
	cacheMu sync.Mutex
}

// call is what the server knows of a call across commands: the caller's
// and callee's tags, so that an offer from the callee (a re-INVITE it
// sent) reaches the same session instead of making a new one.
type call struct {
	caller, callee, branch string
	created                time.Time
}

type cached struct {
	reply []byte
	at    time.Time
}

// cacheFor bounds how long a reply is kept for retransmissions.
const (
	cacheFor  = 30 * time.Second
	cacheSize = 4096
	// maxCookie bounds what the cache keeps per command besides its reply
	// (rtpengine modules send a few dozen bytes).
	maxCookie = 256
)

// ServerConfig configures a Server.
type ServerConfig struct {
	Listen netip.AddrPort
	Allow  []netip.Prefix // sources allowed besides loopback
	Log    *slog.Logger
}

// NewServer binds the NG socket.
func NewServer(engine *relay.Builtin, cfg ServerConfig) (*Server, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(cfg.Listen))
	if err != nil {
		return nil, fmt.Errorf("ng listen %s: %w", cfg.Listen, err)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{engine: engine, conn: conn, allow: cfg.Allow, log: cfg.Log, calls: map[string]*call{},
		started: time.Now(), served: map[string]uint64{}, cache: map[string]cached{}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Serve answers commands until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		s.conn.Close()
	}()
	buf := make([]byte, 65535)
	for {
		n, src, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if !s.allowed(src.Addr()) {
			s.log.Warn("NG command from a source not allowed", "peer", src.String())
			continue
		}
		reply := s.datagram(ctx, buf[:n], src)
		if reply != nil {
			_, _ = s.conn.WriteToUDPAddrPort(reply, src)
		}
	}
}

func (s *Server) allowed(a netip.Addr) bool {
	return a.IsLoopback() || slices.ContainsFunc(s.allow, func(p netip.Prefix) bool { return p.Contains(a) })
}

// datagram turns one request datagram into its reply (nil: nothing to say,
// e.g. no cookie to answer with).
func (s *Server) datagram(ctx context.Context, b []byte, src netip.AddrPort) []byte {
	cookie, d, err := ParseMessage(b)
	if cookie == "" {
		return nil
	}
	if len(cookie) > maxCookie { // answered, but not kept for retransmissions
		out, _ := Message(cookie, failure(fmt.Sprintf("malformed request: cookie longer than %d bytes", maxCookie)))
		return out
	}
	if r, ok := s.cached(cookie); ok {
		return r
	}
	var reply map[string]any
	if err != nil {
		reply = failure("malformed request: " + err.Error())
	} else {
		reply = s.Handle(ctx, d, src)
	}
	out, err := Message(cookie, reply)
	if err != nil {
		out, _ = Message(cookie, failure("reply not encodable: "+err.Error()))
	}
	s.remember(cookie, out)
	return out
}

func (s *Server) cached(cookie string) ([]byte, bool) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	c, ok := s.cache[cookie]
	if !ok || time.Since(c.at) > cacheFor {
		return nil, false
	}
	return c.reply, true
}

func (s *Server) remember(cookie string, reply []byte) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if _, ok := s.cache[cookie]; !ok {
		s.cacheQ = append(s.cacheQ, cookie)
	}
	s.cache[cookie] = cached{reply: reply, at: time.Now()}
	for len(s.cacheQ) > cacheSize || (len(s.cacheQ) > 0 && time.Since(s.cache[s.cacheQ[0]].at) > cacheFor) {
		delete(s.cache, s.cacheQ[0])
		s.cacheQ = s.cacheQ[1:]
	}
}

func failure(reason string) map[string]any {
	return map[string]any{"result": "error", "error-reason": reason}
}

// Handle executes one command dictionary and returns the reply dictionary.
// src is where the command came from (the proxy); where a UA's media may
// come from is its received-from, never src.
func (s *Server) Handle(ctx context.Context, d map[string]any, src netip.AddrPort) map[string]any {
	cmd, _ := d["command"].(string)
	s.mu.Lock()
	s.served[cmd]++
	s.mu.Unlock()
	switch cmd {
	case "ping":
		return map[string]any{"result": "pong"}
	case "offer", "answer":
		return s.offerAnswer(ctx, cmd, d)
	case "delete":
		return s.delete(ctx, d)
	case "query":
		return s.query(ctx, d)
	case "list":
		return s.list(d)
	case "statistics":
		return s.statistics()
	case "":
		return failure("no command")
	case "start recording", "stop recording", "pause recording", "block DTMF", "unblock DTMF", "block media", "unblock media",
		"silence media", "unsilence media", "start forwarding", "stop forwarding", "play media", "stop media", "play DTMF",
		"publish", "subscribe request", "subscribe answer", "unsubscribe", "connect":
		return failure(fmt.Sprintf("command %q is not supported by sipanchor's builtin relay", cmd))
	}
	return failure(fmt.Sprintf("unknown command %q", cmd))
}

// str reads a string key, accepting rtpengine's spellings with spaces or
// dashes ("received from" and "received-from").
func str(d map[string]any, key string) string {
	for _, k := range spellings(key) {
		if v, ok := d[k].(string); ok {
			return v
		}
	}
	return ""
}

func list(d map[string]any, key string) []string {
	for _, k := range spellings(key) {
		switch v := d[k].(type) {
		case []any:
			var out []string
			for _, e := range v {
				if s, ok := e.(string); ok {
					out = append(out, s)
				}
			}
			return out
		case string: // some clients send one value bare
			return []string{v}
		}
	}
	return nil
}

func spellings(key string) []string {
	return []string{key, strings.ReplaceAll(key, "-", " "), strings.ReplaceAll(key, " ", "-")}
}

// flags turns an NG request's options into leg flags, and lists what it
// does not act on (returned to the caller as a warning).
func flags(d map[string]any) (relay.LegFlags, []string, error) {
	var known, ignored []string
	for _, fl := range list(d, "flags") {
		w := strings.ReplaceAll(fl, " ", "-")
		if _, err := relay.ParseFlags(w); err != nil {
			ignored = append(ignored, fl)
			continue
		}
		known = append(known, w)
	}
	f, err := relay.ParseFlags(strings.Join(known, " ")) // each word checked above
	if err != nil {
		return f, nil, err
	}
	if err := f.Supported(); err != nil {
		return f, nil, err
	}
	for _, r := range list(d, "replace") {
		switch strings.ReplaceAll(strings.ToLower(r), " ", "-") {
		case "origin":
			f.ReplaceOrigin = true
		case "session-connection":
			f.ReplaceSessionConnection = true
		default:
			ignored = append(ignored, "replace "+r)
		}
	}
	switch ice := strings.ToLower(str(d, "ICE")); ice {
	case "", "default":
	case "remove":
		f.ICERemove = true
	default:
		return f, nil, fmt.Errorf("ICE=%s is not supported", ice)
	}
	for _, m := range list(d, "rtcp-mux") {
		switch m = strings.ToLower(m); m {
		case "offer", "accept", "demux", "reject":
			f.RTCPMux = m
		default:
			ignored = append(ignored, "rtcp-mux "+m)
		}
	}
	if ma := str(d, "media-address"); ma != "" {
		a, err := netip.ParseAddr(ma)
		if err != nil {
			return f, nil, fmt.Errorf("media-address %q is not an IP address", ma)
		}
		f.MediaAddress = a
	}
	if dirs := list(d, "direction"); len(dirs) > 0 {
		ignored = append(ignored, "direction (one media interface)")
	}
	return f, ignored, nil
}

func (s *Server) offerAnswer(ctx context.Context, cmd string, d map[string]any) map[string]any {
	cid, fromTag, toTag := str(d, "call-id"), str(d, "from-tag"), str(d, "to-tag")
	sdp := str(d, "sdp")
	switch {
	case cid == "":
		return failure("no call-id")
	case fromTag == "":
		return failure("no from-tag")
	case sdp == "":
		return failure("no sdp")
	case cmd == "answer" && toTag == "":
		return failure("no to-tag in answer")
	}
	f, ignored, err := flags(d)
	if err != nil {
		return failure(err.Error())
	}
	if fam := strings.ToUpper(str(d, "address-family")); fam != "" {
		want := "IP4"
		if s.engine.Relay().Advertise().Is6() {
			want = "IP6"
		}
		if fam != want {
			return failure(fmt.Sprintf("address family %s is not served (this relay is %s)", fam, want))
		}
	}
	if tp := str(d, "transport-protocol"); tp != "" && !strings.Contains(sdp, " "+tp+" ") {
		return failure(fmt.Sprintf("transport-protocol %s: protocol conversion is not supported", tp))
	}
	// Where the UA's SIP came from, as the proxy saw it: the NG command's
	// own source is the proxy, never where the UA's media comes from.
	var source netip.AddrPort
	if rf := list(d, "received-from"); len(rf) == 2 {
		if a, err := netip.ParseAddr(rf[1]); err == nil {
			source = netip.AddrPortFrom(a, 0)
		}
	}

	// Which side sends this SDP, in the call's own terms.
	s.mu.Lock()
	c := s.calls[cid]
	var from relay.Leg
	switch {
	case c == nil && cmd == "offer":
		c = &call{caller: fromTag, branch: str(d, "via-branch"), created: time.Now()}
		s.calls[cid] = c
		from = relay.Caller
	case c == nil:
		s.mu.Unlock()
		return failure("unknown call-id " + cid)
	case cmd == "offer" && fromTag == c.caller, cmd == "answer" && fromTag == c.callee:
		from = relay.Caller
	case cmd == "offer" && fromTag == c.callee, cmd == "answer" && fromTag == c.caller:
		from = relay.Callee
	case cmd == "offer":
		s.mu.Unlock()
		return failure("from-tag " + fromTag + " is not a tag of call " + cid)
	}
	if cmd == "answer" && from == relay.Callee && c.callee == "" {
		c.callee = toTag // the first answer names the callee
	}
	key := relay.SessionKey{CallID: cid, FromTag: c.caller, ToTag: c.callee, ViaBranch: c.branch}
	s.mu.Unlock()

	req := &relay.Request{Key: key, From: from, SDP: []byte(sdp), Source: source, Caller: f, Callee: f}
	var rep *relay.Reply
	if cmd == "offer" {
		rep, err = s.engine.Offer(ctx, req)
	} else {
		rep, err = s.engine.Answer(ctx, req)
	}
	if err != nil {
		if cmd == "offer" && from == relay.Caller {
			s.forgetIfEmpty(cid)
		}
		s.log.Info("NG "+cmd+" refused", "call_id", cid, "err", err)
		return failure(err.Error())
	}
	out := map[string]any{"result": "ok", "sdp": string(rep.SDP)}
	if len(ignored) > 0 {
		out["warning"] = "not acted on: " + strings.Join(ignored, ", ")
	}
	return out
}

// forgetIfEmpty drops a call whose first offer failed.
func (s *Server) forgetIfEmpty(cid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.calls[cid]; c != nil && c.callee == "" {
		if _, err := s.engine.Query(context.Background(), relay.SessionKey{CallID: cid, FromTag: c.caller, ViaBranch: c.branch}); err != nil {
			delete(s.calls, cid)
		}
	}
}

func (s *Server) delete(ctx context.Context, d map[string]any) map[string]any {
	cid := str(d, "call-id")
	if cid == "" {
		return failure("no call-id")
	}
	s.mu.Lock()
	c := s.calls[cid]
	delete(s.calls, cid)
	s.mu.Unlock()
	if c == nil {
		return failure("unknown call-id " + cid)
	}
	key := relay.SessionKey{CallID: cid, FromTag: c.caller, ToTag: c.callee, ViaBranch: c.branch}
	reply := s.stats(ctx, key, c)
	if err := s.engine.Delete(ctx, &relay.Request{Key: relay.SessionKey{CallID: cid, FromTag: c.caller}}); err != nil {
		return failure(err.Error())
	}
	return reply
}

func (s *Server) query(ctx context.Context, d map[string]any) map[string]any {
	cid := str(d, "call-id")
	s.mu.Lock()
	c := s.calls[cid]
	s.mu.Unlock()
	if c == nil {
		return failure("unknown call-id " + cid)
	}
	return s.stats(ctx, relay.SessionKey{CallID: cid, FromTag: c.caller, ToTag: c.callee, ViaBranch: c.branch}, c)
}

// stats renders a session in rtpengine's query shape: created, totals
// (RTP, RTCP) and per-tag medias with their streams.
func (s *Server) stats(ctx context.Context, key relay.SessionKey, c *call) map[string]any {
	st, err := s.engine.Query(ctx, key)
	if err != nil {
		return map[string]any{"result": "ok", "created": c.created.Unix(), "totals": totals(0, 0, 0, 0), "tags": map[string]any{}}
	}
	var rtpP, rtpB, rtcpP, rtcpB uint64
	var callerMedias, calleeMedias []any
	for _, x := range st.Streams {
		rtpP += x.Caller.PacketsIn + x.Callee.PacketsIn
		rtpB += x.Caller.BytesIn + x.Callee.BytesIn
		rtcpP += x.CallerRTCP.PacketsIn + x.CalleeRTCP.PacketsIn
		rtcpB += x.CallerRTCP.BytesIn + x.CalleeRTCP.BytesIn
		callerMedias = append(callerMedias, mediaOf(x.Index, x.Caller, x.CallerRTCP))
		calleeMedias = append(calleeMedias, mediaOf(x.Index, x.Callee, x.CalleeRTCP))
	}
	tags := map[string]any{c.caller: map[string]any{"tag": c.caller, "medias": orEmpty(callerMedias)}}
	if c.callee != "" {
		tags[c.callee] = map[string]any{"tag": c.callee, "medias": orEmpty(calleeMedias)}
	}
	return map[string]any{"result": "ok", "created": st.Created.Unix(), "totals": totals(rtpP, rtpB, rtcpP, rtcpB), "tags": tags}
}

func orEmpty(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

func totals(rtpP, rtpB, rtcpP, rtcpB uint64) map[string]any {
	return map[string]any{
		"RTP":  map[string]any{"packets": rtpP, "bytes": rtpB, "errors": 0},
		"RTCP": map[string]any{"packets": rtcpP, "bytes": rtcpB, "errors": 0},
	}
}

// mediaOf is one m= line of one tag: its RTP and RTCP streams as rtpengine
// lists them (local port, the peer's endpoint, what it sent).
func mediaOf(index int, rtp, rtcp relayEndpointStats) map[string]any {
	stream := func(e relayEndpointStats) map[string]any {
		m := map[string]any{"local port": e.Port, "stats": map[string]any{"packets": e.PacketsIn, "bytes": e.BytesIn, "errors": 0}}
		addr := e.Latched
		if addr == "" {
			addr = e.SDPAddr
		}
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			fam := "IPv4"
			if ap.Addr().Is6() {
				fam = "IPv6"
			}
			m["endpoint"] = map[string]any{"family": fam, "address": ap.Addr().String(), "port": int(ap.Port())}
		}
		return m
	}
	return map[string]any{"index": index + 1, "type": "audio", "streams": []any{stream(rtp), stream(rtcp)}}
}

func (s *Server) list(d map[string]any) map[string]any {
	limit := 32
	if n, ok := d["limit"].(int64); ok && n > 0 {
		limit = int(n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.calls))
	for id := range s.calls {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return map[string]any{"result": "ok", "calls": out}
}

func (s *Server) statistics() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	used, total := s.engine.Relay().PortPairs()
	cmds := map[string]any{}
	for k, v := range s.served {
		if k != "" {
			cmds[k] = v
		}
	}
	return map[string]any{"result": "ok", "statistics": map[string]any{
		"currentstatistics": map[string]any{"sessionsown": len(s.calls), "sessionstotal": len(s.calls)},
		"ports":             map[string]any{"used": used * 2, "free": (total - used) * 2},
		"uptime":            int64(time.Since(s.started).Seconds()),
		"commands":          cmds,
	}}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
