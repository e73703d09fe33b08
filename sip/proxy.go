package sip

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sipanchor/config"
	"sipanchor/dialog"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Options are what a Proxy is built from.
type Options struct {
	Config *config.Config
	DB     *sql.DB
	Log    *slog.Logger
	// Dialogs anchors media through the dialog layer; nil = signalling only.
	Dialogs *dialog.Manager
}

// Proxy is the SIP side of sipanchor: a transaction-stateful proxy with a
// registrar. New binds its sockets; Serve runs it until its context ends.
type Proxy struct {
	cfg *config.Config
	log *slog.Logger

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client
	tp  *sip.TransportLayer

	listeners []*listener
	self      map[string]bool // "host:port" that address this proxy
	domains   map[string]bool
	routes    []staticRoute
	peers     []config.Peer  // trusted neighbours, by source network
	peerMax   map[string]int // [[peer]] max_calls by name
	defRoute  *staticRoute

	loc     *Location
	reg     *registrar
	auth    *authenticator
	dialogs *dialog.Manager

	flows     *flows         // which listener each source address came in on
	dns       *resolver      // next-hop host names, cached, off the request path
	pike      *pike          // flood bans by source address
	tcp       *streamHygiene // accepted TCP connections' deadlines and per-source limit
	limits    *callLimits    // new calls: at once, per second, in progress
	malformed atomic.Int64   // datagrams dropped or answered 400 before the transaction layer
	held      *heldAnswers   // transactions kept for answers made here
	trace     *tracer        // each call's messages; nil = [trace] calls = 0
	metrics   *Metrics
	wg        sync.WaitGroup
}

// timerC bounds how long an INVITE branch may ring (RFC 3261 §16.6 step 11).
const timerC = 3 * time.Minute

// New binds the configured listeners, opens the location table and returns
// a proxy ready to Serve.
func New(ctx context.Context, o Options) (*Proxy, error) {
	cfg := o.Config
	p := &Proxy{cfg: cfg, log: o.Log, self: map[string]bool{}, domains: map[string]bool{}, dialogs: o.Dialogs, metrics: newMetrics(), flows: newFlows(), dns: newResolver(cfg.SIP.Resolver), held: newHeldAnswers(maxHeldAnswers), trace: newTracer(cfg.Trace)}
	if p.dialogs != nil {
		p.dialogs.SetEnder(p.endDialog)
	}
	for _, d := range cfg.SIP.Domains {
		p.domains[d] = true
	}
	p.peers = cfg.Peers
	var trusted []netip.Prefix
	for _, pe := range cfg.Peers {
		trusted = append(trusted, pe.Prefixes...)
	}
	lim := cfg.Limits
	p.pike = newPike(lim.Window.Duration, lim.BanTime.Duration, lim.MaxRequests, lim.MaxSources, trusted, o.Log)
	var calls callCounter
	if o.Dialogs != nil {
		calls = o.Dialogs
	}
	p.limits = newCallLimits(lim.MaxCalls, lim.MaxCallsPerSource, lim.MaxCPS, lim.MaxPendingInvites, lim.RetryAfter.Duration, calls)
	p.limits.perUser = lim.MaxCallsPerUser
	p.peerMax = map[string]int{}
	for _, pe := range cfg.Peers {
		p.peerMax[pe.Name] = pe.MaxCalls
	}
	for i, r := range cfg.Routes {
		sr, err := parseRoute(r.Match, r.To)
		if err != nil {
			return nil, fmt.Errorf("route %d: %w", i, err)
		}
		p.routes = append(p.routes, sr)
	}
	if cfg.SIP.DefaultRoute != "" {
		sr, err := parseRoute("*", cfg.SIP.DefaultRoute)
		if err != nil {
			return nil, fmt.Errorf("default_route: %w", err)
		}
		p.defRoute = &sr
	}

	loc, err := OpenLocation(ctx, o.DB, o.Log)
	if err != nil {
		return nil, err
	}
	p.loc = loc
	p.reg = &registrar{loc: loc, cfg: cfg.Registrar, log: o.Log, now: time.Now}
	if cfg.Registrar.Auth {
		a, err := newAuthenticator(o.DB, cfg.Registrar.Realm, cfg.Registrar.AuthAlgorithms, o.Log)
		if err != nil {
			return nil, err
		}
		p.auth = a
		p.reg.auth = a
	}

	if err := acquireTimers(cfg.SIP.T1.Duration); err != nil {
		return nil, err
	}
	ls, err := bind(cfg.Listeners, cfg.SIP.Advertise)
	if err != nil {
		releaseTimers()
		return nil, err
	}
	p.listeners = ls
	p.seedFlows()
	ifaces := interfaceAddrs()
	filter := &datagramFilter{parser: sip.NewParser(), sockets: map[string]udpSocket{}, bad: p.badDatagram, shed: p.newQueueShed(cfg.Limits)}
	p.tcp = newStreamHygiene(cfg.SIP, trusted, p.loc, o.Dialogs, o.Log)
	for _, l := range ls {
		p.self[strings.ToLower(net.JoinHostPort(l.host, strconv.Itoa(l.port)))] = true
		p.self[l.local.String()] = true
		if l.local.Addr().IsUnspecified() {
			for _, a := range ifaces {
				p.self[netip.AddrPortFrom(a, l.local.Port()).String()] = true
			}
		}
		p.front(l, filter)
	}

	// sipgo logs every parse failure with the whole message at error level;
	// those are ours to report (badDatagram), so it only gets warnings up.
	sgLog := slog.New(dropAttrs{o.Log.Handler().WithAttrs([]slog.Attr{slog.String("component", "sipgo")}), slog.LevelWarn})
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("sipanchor"),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerReadFilter(func(props sip.TransportReadProps, data []byte) ([]byte, error) {
				if props.Transport == "UDP" {
					// A banned source costs a map lookup, nothing more.
					if !p.admitDatagram(props.RemoteAddr, data) {
						return nil, nil
					}
					p.trace.received(props, data)
				}
				p.learnRead(props)
				return filter.filter(props, data)
			}),
			sip.WithTransportLayerLogger(sgLog),
		),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerUnhandledResponseHandler(p.strayResponse),
			sip.WithTransactionLayerLogger(sgLog),
		),
	)
	if err != nil {
		p.closeListeners()
		releaseTimers()
		return nil, err
	}
	p.ua = ua
	p.tp = ua.TransportLayer()
	p.srv, _ = sipgo.NewServer(ua, sipgo.WithServerLogger(sgLog))
	p.cli, _ = sipgo.NewClient(ua, sipgo.WithClientLogger(sgLog))
	p.srv.OnNoRoute(p.handle)
	return p, nil
}

// front puts sipanchor's sockets in front of sipgo on listener l: over
// UDP, the read filter answering from the socket and the trace under
// every write; over TCP, each accepted connection framed and screened.
func (p *Proxy) front(l *listener, filter *datagramFilter) {
	if l.pc != nil {
		out := l.pc
		if p.trace != nil {
			out = &tracedPacketConn{PacketConn: l.pc, trace: p.trace, local: l.local}
		}
		if l.stamped != nil {
			filter.sockets[l.pc.LocalAddr().String()] = udpSocket{stamped: l.stamped, out: out}
			if l.rcvbuf < udpBufferSize {
				p.log.Warn("UDP receive buffer smaller than asked: bursts may be dropped", "listen", l.key(), "bytes", l.rcvbuf/2, "asked", udpBufferSize)
			}
		}
		l.pc = restoringPacketConn{out}
	}
	if l.ln != nil {
		l.ln = &screenListener{Listener: l.ln, parser: filter.parser, bad: p.badDatagram, admit: p.admitStream, refuse: p.bannedConn, hygiene: p.tcp, trace: p.trace}
	}
}

// Addrs lists the bound listeners as "transport:ip:port".
func (p *Proxy) Addrs() []string {
	out := make([]string, len(p.listeners))
	for i, l := range p.listeners {
		out[i] = l.key()
	}
	return out
}

// Location is the registrar's binding table.
func (p *Proxy) Location() *Location { return p.loc }

// Metrics are the proxy's counters.
func (p *Proxy) Metrics() *Metrics { return p.metrics }

// Serve runs the listeners, the binding expiry sweeper and the NAT
// keepalives until ctx ends, then closes everything it opened.
func (p *Proxy) Serve(ctx context.Context) error {
	for _, l := range p.listeners {
		p.log.Info("listening", "transport", l.transport, "addr", l.local.String(), "advertise", net.JoinHostPort(l.host, strconv.Itoa(l.port)))
		p.wg.Go(func() {
			var err error
			if l.pc != nil {
				err = p.srv.ServeUDP(l.pc)
			} else {
				err = p.srv.ServeTCP(l.ln)
			}
			if err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				p.log.Error("listener stopped", "addr", l.key(), "err", err)
			}
		})
	}
	p.wg.Go(func() { p.sweep(ctx) })
	if iv := p.cfg.NAT.KeepaliveInterval.Duration; iv > 0 {
		p.wg.Go(func() { p.keepalive(ctx, iv) })
	}
	<-ctx.Done()
	p.closeListeners()
	p.ua.Close()
	p.wg.Wait()
	releaseTimers()
	return nil
}

func (p *Proxy) closeListeners() {
	for _, l := range p.listeners {
		l.close()
	}
}

func (p *Proxy) badDatagram(reason string, src net.Addr) {
	n := p.malformed.Add(1)
	// One line for the first and then every 1000th: junk must not flood the log.
	if n == 1 || n%1000 == 0 {
		p.log.Warn("malformed SIP datagram", "reason", reason, "peer", src.String(), "total", n)
	}
}

// Malformed is the number of datagrams rejected before the transaction layer.
func (p *Proxy) Malformed() int64 { return p.malformed.Load() }

// inbound is the listener a server transaction's request arrived on.
func (p *Proxy) inbound(req *sip.Request, tx sip.ServerTransaction) *listener {
	tr := strings.ToLower(req.Transport())
	if st, ok := tx.(*sip.ServerTx); ok && st.Connection() != nil {
		if local, ok := addrPortOf(st.Connection().LocalAddr()); ok {
			if l := p.listenerAt(tr, local); l != nil {
				return l
			}
		}
	}
	for _, l := range p.listeners {
		if l.transport == tr {
			return l
		}
	}
	return p.listeners[0]
}

// outbound picks the listener to send to dst over transport: the one
// named by prefer (the listener a binding or dialog came through) if it
// fits, else the one dst's own messages last came in on, else one whose
// address can reach dst. A loopback-bound listener reaches another host
// only back through a port forward (DNAT) that brought that host to it;
// it is the last resort.
func (p *Proxy) outbound(transport string, dst netip.AddrPort, prefer string) (*listener, error) {
	fits := func(l *listener) bool {
		la := l.local.Addr()
		if l.transport != transport {
			return false
		}
		if la.IsUnspecified() {
			return la.Is6() || dst.Addr().Is4()
		}
		return la.Is4() == dst.Addr().Is4()
	}
	if prefer != "" {
		for _, l := range p.listeners {
			if l.key() == prefer && fits(l) {
				return l, nil
			}
		}
	}
	if l := p.flows.lookup(transport, dst); l != nil && fits(l) {
		return l, nil
	}
	var best, last *listener
	for _, l := range p.listeners {
		if !fits(l) {
			continue
		}
		if last == nil {
			last = l
		}
		if l.local.Addr().IsLoopback() && !dst.Addr().IsLoopback() {
			continue
		}
		if best == nil {
			best = l
		}
	}
	if best == nil {
		best = last
	}
	if best == nil {
		return nil, fmt.Errorf("%s to %s: %w", transport, dst, errNoListener)
	}
	return best, nil
}

// isUs reports whether a URI addresses this proxy (host and port).
func (p *Proxy) isUs(u sip.Uri) bool {
	port := u.Port
	if port == 0 {
		port = 5060
		if u.IsEncrypted() {
			port = 5061
		}
	}
	host := strings.ToLower(strings.Trim(u.Host, "[]"))
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.Unmap().String()
	}
	return p.self[net.JoinHostPort(host, strconv.Itoa(port))]
}

// isLocalDomain reports whether the location service is authoritative
// for host: a configured domain or one of our own addresses.
func (p *Proxy) isLocalDomain(u sip.Uri) bool {
	if p.domains[strings.ToLower(u.Host)] {
		return true
	}
	h := u
	h.Port = 0
	return p.isUs(u) || p.isUs(h)
}

// handle is every request's entry point (sipgo gives each its goroutine).
func (p *Proxy) handle(req *sip.Request, tx sip.ServerTransaction) {
	restoreMethod(req)
	p.metrics.request(string(req.Method))
	if err := checkRequest(req); err != nil {
		// Datagrams and accepted connections were screened before; this
		// came over a connection we opened.
		p.malformed.Add(1)
		p.rejectRequest(req, tx, err)
		return
	}
	switch req.Method {
	case sip.ACK:
		if !p.held.ours(req) { // the ACK of an answer of ours whose transaction ended
			p.forwardStateless(req)
		}
		return
	case sip.CANCEL:
		// sipgo matched CANCELs of live INVITE transactions already.
		p.cancelLost(req, tx)
		return
	}
	forwarded := func() {}
	if req.IsInvite() && !inDialog(req) {
		release, ok := p.admitCall(req, tx)
		if !ok {
			return
		}
		defer release()
		forwarded = release
	}
	// From here on a CANCEL of this INVITE is seen, whatever step the
	// INVITE is at: sipgo answers it with a 487 at once.
	cw := watchCancel(req, tx)
	if req.IsInvite() {
		// RFC 3261 §16.2: answer 100 at once so the caller stops retransmitting.
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil))
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		p.reply(req, tx, sip.StatusTooManyHops, "Too Many Hops")
		return
	}
	loopHash := p.loopHash(req)
	if p.looped(req, loopHash) {
		p.reply(req, tx, sip.StatusLoopDetected, "Loop Detected")
		return
	}
	p.consumeRoutes(req)

	if req.Route() == nil && !inDialog(req) {
		switch {
		case req.Method == sip.REGISTER && p.servesRegister(req.Recipient):
			p.register(req, tx)
			return
		case req.Method == sip.OPTIONS && req.Recipient.User == "" && p.isLocalDomain(req.Recipient):
			res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
			res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK, SUBSCRIBE, NOTIFY, REFER, MESSAGE"))
			p.respond(req, tx, res)
			return
		}
	}
	peer := p.peerOf(req)
	authed := false
	if p.auth != nil && peer == "" && p.mustAuthenticate(req) {
		if res := p.auth.check(context.Background(), req, req.From().Address.User, strings.ToLower(req.From().Address.Host), true); res != nil {
			p.respond(req, tx, res)
			return
		}
		authed = true
	}
	targets, status, reason := p.targets(req)
	if status != 0 {
		p.reply(req, tx, status, reason)
		return
	}
	user := p.callerUser(req, peer, authed)
	if req.IsInvite() && !inDialog(req) {
		if res := p.callerLimit(req, peer, user); res != nil {
			p.respond(req, tx, res)
			return
		}
	}
	if peer == "" && !authed && p.leaves(req, targets) {
		p.log.Info("relaying denied", "method", string(req.Method), "call_id", callID(req), "peer", req.Source(), "ruri", req.Recipient.String(), "from", req.From().Address.String())
		p.reply(req, tx, sip.StatusForbidden, "Relaying Denied")
		return
	}
	if cw.cancelled() {
		p.log.Info("cancelled by caller before forwarding", "call_id", callID(req), "peer", req.Source())
		return
	}
	a, status, reason := p.engage(req, peer, user)
	if status != 0 {
		p.reply(req, tx, status, reason)
		return
	}
	if a != nil && a.initial {
		// The relay sessions go before sipgo sends the 487.
		cw.onCancel(func() { a.d.Cancel(context.Background()) })
	}
	p.proxy(req, tx, targets, loopHash, a, cw, forwarded)
}

// mustAuthenticate: out-of-dialog requests claiming to come from a local
// user (not REGISTER, which the registrar challenges itself).
func (p *Proxy) mustAuthenticate(req *sip.Request) bool {
	if req.Method == sip.REGISTER || req.Method == sip.ACK || req.Method == sip.CANCEL {
		return false
	}
	if inDialog(req) {
		return false
	}
	return p.isLocalDomain(req.From().Address) || len(p.domains) == 0
}

// servesRegister: the registrar takes REGISTERs for its domains, for its own
// addresses, and for any domain when none is configured and no static route
// claims the request.
func (p *Proxy) servesRegister(u sip.Uri) bool {
	if p.isLocalDomain(u) {
		return true
	}
	if len(p.domains) > 0 {
		return false
	}
	_, routed := p.matchRoute(u)
	return !routed
}

func (p *Proxy) register(req *sip.Request, tx sip.ServerTransaction) {
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		p.reply(req, tx, sip.StatusBadRequest, "Bad Source")
		return
	}
	in := p.inbound(req, tx)
	res := p.reg.register(context.Background(), req, regSource{
		addr:      netip.AddrPortFrom(src.Addr().Unmap(), src.Port()),
		transport: in.transport,
		local:     in.key(),
	})
	p.respond(req, tx, res)
}

// reply answers a request with a locally generated response.
func (p *Proxy) reply(req *sip.Request, tx sip.ServerTransaction, code int, reason string) {
	p.respond(req, tx, sip.NewResponseFromRequest(req, code, reason, nil))
}

func (p *Proxy) respond(req *sip.Request, tx sip.ServerTransaction, res *sip.Response) {
	if tx == nil {
		return
	}
	local := localAnswer(req, res)
	if local {
		p.held.label(req, res)
	}
	if err := tx.Respond(res); err != nil {
		p.log.Warn("sending response failed", "method", string(req.Method), "call_id", callID(req), "status", res.StatusCode, "peer", req.Source(), "err", err)
		return
	}
	if local {
		p.held.keep(tx)
	}
	if res.StatusCode >= 200 {
		p.metrics.final(string(req.Method), res.StatusCode, 0) // answered at once
	}
	p.log.Info("sip", "method", string(req.Method), "call_id", callID(req), "status", res.StatusCode, "peer", req.Source())
}

// inDialog: the request carries a To tag.
func inDialog(req *sip.Request) bool {
	return req.To().Params != nil && req.To().Params.Has("tag")
}

func callID(m sip.Message) string {
	if c := m.CallID(); c != nil {
		return string(*c)
	}
	return ""
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
