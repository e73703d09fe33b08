package config

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Listener is one parsed [sip] listen entry.
type Listener struct {
	Transport string // "udp" or "tcp"
	Addr      netip.AddrPort
}

func (l Listener) String() string { return l.Transport + ":" + l.Addr.String() }

// Transports sipanchor can listen on.
var transports = []string{"udp", "tcp"}

// noTLS is why a next hop asking for TLS is refused.
const noTLS = "sips/TLS needs a tls listener, not supported yet"

// ParseListener parses "TRANSPORT:HOST:PORT" (HOST an IP literal, IPv6 in
// brackets; PORT defaults to 5060).
func ParseListener(s string) (Listener, error) {
	tr, hostport, ok := strings.Cut(s, ":")
	if !ok {
		return Listener{}, fmt.Errorf("%q: want TRANSPORT:HOST:PORT, e.g. \"udp:0.0.0.0:5060\"", s)
	}
	tr = strings.ToLower(tr)
	if !slices.Contains(transports, tr) {
		return Listener{}, fmt.Errorf("%q: unknown transport %q (want one of %s)", s, tr, strings.Join(transports, ", "))
	}
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		// Port 0 is any free port (the same on every transport of the IP
		// when it can be): for tests and the harness, never a default.
		return Listener{Transport: tr, Addr: ap}, nil
	}
	a, err := netip.ParseAddr(strings.Trim(hostport, "[]"))
	if err != nil {
		return Listener{}, fmt.Errorf("%q: %q is not an IP address with an optional port", s, hostport)
	}
	return Listener{Transport: tr, Addr: netip.AddrPortFrom(a, 5060)}, nil
}

// CheckSIPURI reports whether s is a SIP URI usable as a next hop:
// sip:[user@]host[:port][;params], transport=udp|tcp if given. A sips: URI
// or transport=tls is refused: there is no TLS transport to send it over.
func CheckSIPURI(s string) error {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || (scheme != "sip" && scheme != "sips") {
		return fmt.Errorf("%q: not a SIP URI (want e.g. \"sip:10.0.0.1:5060;transport=udp\")", s)
	}
	if scheme == "sips" {
		return fmt.Errorf("%q: %s", s, noTLS)
	}
	hostport, params, _ := strings.Cut(rest, ";")
	if i := strings.LastIndex(hostport, "@"); i >= 0 {
		hostport = hostport[i+1:]
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	}
	host = strings.Trim(host, "[]")
	if !validHost(host) {
		return fmt.Errorf("%q: bad host %q", s, host)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: bad port %q", s, port)
		}
	}
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(k, "transport") && strings.EqualFold(v, "tls") {
			return fmt.Errorf("%q: %s", s, noTLS)
		}
		if strings.EqualFold(k, "transport") && !slices.Contains(transports, strings.ToLower(v)) {
			return fmt.Errorf("%q: unknown transport %q (want one of %s)", s, v, strings.Join(transports, ", "))
		}
	}
	return nil
}

// validHost accepts an IP literal or a DNS name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return false
			}
		}
	}
	return true
}

// IsLoopbackListen reports whether an HTTP listen address only accepts local
// connections.
func IsLoopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// validate checks the decoded values, fills derived fields and returns every
// mistake it finds (nil when there is none).
func (c *Config) validate(lines positions, file string) error {
	var errs Errors
	bad := func(key, format string, args ...any) {
		errs = append(errs, Error{File: file, Line: lines.find(toml.Key(strings.Split(key, "."))), Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	c.Listeners = c.Listeners[:0]
	if len(c.SIP.Listen) == 0 {
		bad("sip.listen", "at least one listen address is needed")
	}
	seen := map[string]bool{}
	for _, s := range c.SIP.Listen {
		l, err := ParseListener(s)
		if err != nil {
			bad("sip.listen", "%v", err)
			continue
		}
		if seen[l.String()] {
			bad("sip.listen", "%q is listed twice", s)
			continue
		}
		seen[l.String()] = true
		c.Listeners = append(c.Listeners, l)
	}
	if a := c.SIP.Advertise; a != "" {
		host := a
		if h, p, err := net.SplitHostPort(a); err == nil {
			host = h
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				bad("sip.advertise", "%q: bad port %q", a, p)
			}
		}
		if !validHost(strings.Trim(host, "[]")) {
			bad("sip.advertise", "%q is not a host or host:port", a)
		}
	}
	for i, d := range c.SIP.Domains {
		if !validHost(d) {
			bad("sip.domains", "%q is not a domain name or IP address", d)
		}
		c.SIP.Domains[i] = strings.ToLower(d)
	}
	if c.SIP.DefaultRoute != "" {
		if err := CheckSIPURI(c.SIP.DefaultRoute); err != nil {
			bad("sip.default_route", "%v", err)
		}
	}

	if r := c.SIP.Resolver; r != "" {
		if _, err := netip.ParseAddrPort(r); err != nil {
			bad("sip.resolver", "%q: want IP:port of a DNS server", r)
		}
	}
	if t1 := c.SIP.T1.Duration; t1 < 10*time.Millisecond || t1 > 10*time.Second {
		bad("sip.t1", "must be 10ms..10s, got %s", t1)
	}
	if mt := c.SIP.TCPMessageTimeout.Duration; mt < 100*time.Millisecond || mt > 5*time.Minute {
		bad("sip.tcp_message_timeout", "must be 100ms..5m, got %s", mt)
	}
	if it := c.SIP.TCPIdleTimeout.Duration; it != 0 && it < time.Second {
		bad("sip.tcp_idle_timeout", "must be 0s (never) or at least 1s, got %s", it)
	}
	if n := c.SIP.TCPMaxPerSource; n < 0 {
		bad("sip.tcp_max_per_source", "must not be negative (0 = no limit), got %d", n)
	}

	r := c.Registrar
	if r.MinExpires < 1 {
		bad("registrar.min_expires", "must be at least 1 (seconds), got %d", r.MinExpires)
	}
	if r.MaxExpires < r.MinExpires {
		bad("registrar.max_expires", "must not be below min_expires (%d), got %d", r.MinExpires, r.MaxExpires)
	}
	if r.DefaultExpires < 1 {
		bad("registrar.default_expires", "must be at least 1 (seconds), got %d", r.DefaultExpires)
	}

	if r.MaxContacts < 1 {
		bad("registrar.max_contacts", "must be at least 1, got %d", r.MaxContacts)
	}
	c.Registrar.AllowPrefixes = nil
	for _, n := range r.AllowNetworks {
		pfx, err := ParseNetwork(n)
		if err != nil {
			bad("registrar.allow_networks", "%v", err)
			continue
		}
		c.Registrar.AllowPrefixes = append(c.Registrar.AllowPrefixes, pfx)
	}

	if len(r.AuthAlgorithms) == 0 {
		bad("registrar.auth_algorithms", "at least one algorithm is needed (SHA-256, MD5)")
	}
	for _, a := range r.AuthAlgorithms {
		if a != "SHA-256" && a != "MD5" {
			bad("registrar.auth_algorithms", "%q: want SHA-256 or MD5", a)
		}
	}

	if c.NAT.KeepaliveInterval.Duration < 0 {
		bad("nat.keepalive_interval", "must not be negative")
	}
	if c.NAT.KeepaliveFailures < 1 {
		bad("nat.keepalive_failures", "must be at least 1, got %d", c.NAT.KeepaliveFailures)
	}

	for i, rt := range c.Routes {
		key := "route." + strconv.Itoa(i)
		if rt.Match == "" {
			bad(key+".match", "is required")
		} else if _, err := path.Match(rt.Match, ""); err != nil {
			bad(key+".match", "%q is not a valid glob", rt.Match)
		}
		if rt.To == "" {
			bad(key+".to", "is required")
		} else if err := CheckSIPURI(rt.To); err != nil {
			bad(key+".to", "%v", err)
		}
	}

	names := map[string]bool{}
	for i := range c.Peers {
		pe := &c.Peers[i]
		key := "peer." + strconv.Itoa(i)
		switch {
		case pe.Name == "":
			bad(key+".name", "is required")
		case names[pe.Name]:
			bad(key+".name", "peer %q is defined twice", pe.Name)
		}
		names[pe.Name] = true
		if pe.MaxCalls < 0 {
			bad(key+".max_calls", "must not be negative (0 = no limit), got %d", pe.MaxCalls)
		}
		if len(pe.Networks) == 0 {
			bad(key+".networks", "at least one network is needed")
		}
		pe.Prefixes = pe.Prefixes[:0]
		for _, n := range pe.Networks {
			pfx, err := ParseNetwork(n)
			if err != nil {
				bad(key+".networks", "%v", err)
				continue
			}
			pe.Prefixes = append(pe.Prefixes, pfx)
		}
	}

	lim := c.Limits
	if lim.Window.Duration < 100*time.Millisecond || lim.Window.Duration > time.Hour {
		bad("limits.window", "must be 100ms..1h, got %s", lim.Window.Duration)
	}
	if lim.BanTime.Duration < time.Second {
		bad("limits.ban_time", "must be at least 1s, got %s", lim.BanTime.Duration)
	}
	if lim.MaxSources < 64 {
		bad("limits.max_sources", "must be at least 64, got %d", lim.MaxSources)
	}
	for _, k := range []struct {
		key string
		v   int
	}{{"limits.max_requests", lim.MaxRequests}, {"limits.max_calls", lim.MaxCalls}, {"limits.max_calls_per_source", lim.MaxCallsPerSource},
		{"limits.max_calls_per_user", lim.MaxCallsPerUser},
		{"limits.max_cps", lim.MaxCPS}, {"limits.max_pending_invites", lim.MaxPendingInvites}} {
		if k.v < 0 {
			bad(k.key, "must not be negative (0 = no limit), got %d", k.v)
		}
	}
	if d := lim.MaxQueueDelay.Duration; d < 0 || d > 10*time.Second {
		bad("limits.max_queue_delay", "must be between 0s (off) and 10s, got %s", d)
	}
	if ra := lim.RetryAfter.Duration; ra < time.Second || ra%time.Second != 0 {
		bad("limits.retry_after", "must be whole seconds, at least 1s, got %s", ra)
	}
	// Below this the soft limit is under what sipanchor needs idle, and the
	// garbage collector would run without pause.
	if m := lim.Memory; m != 0 && m < MinMemory {
		b, _ := m.MarshalText()
		bad("limits.memory", "must be 0 (no limit) or at least 64MiB, got %s", b)
	}

	if sy := c.Store.Sync; sy != "normal" && sy != "full" {
		bad("store.sync", "%q: want normal or full", sy)
	}

	m := c.Media
	switch {
	case m.PortMin < 1 || m.PortMin > 65535:
		bad("media.port_min", "must be 1-65535, got %d", m.PortMin)
	case m.PortMax < 1 || m.PortMax > 65535:
		bad("media.port_max", "must be 1-65535, got %d", m.PortMax)
	case m.PortMax < m.PortMin:
		bad("media.port_max", "range %d..%d is inverted", m.PortMin, m.PortMax)
	case m.PortMin%2 != 0:
		bad("media.port_min", "must be even (RTP on even ports, RTCP on the odd one above), got %d", m.PortMin)
	case m.PortMax-m.PortMin < 1:
		bad("media.port_max", "range %d..%d is empty: it holds no RTP/RTCP port pair", m.PortMin, m.PortMax)
	}

	if !slices.Contains([]string{"always", "nat", "never"}, c.Relay.Engage) {
		bad("relay.engage", "%q: want always, nat or never", c.Relay.Engage)
	}
	if c.Relay.Lifetime.Duration < 0 {
		bad("relay.lifetime", "must not be negative")
	}
	switch c.Relay.Engine {
	case "builtin":
	case "rtpengine":
		if len(c.Relay.Sets) == 0 {
			bad("relay.engine", "\"rtpengine\" needs at least one [[relay.set]] with nodes")
		}
	default:
		bad("relay.engine", "%q: want builtin or rtpengine", c.Relay.Engine)
	}
	if c.Relay.Engine != "rtpengine" {
		// Only the NG client reads these: changed with another engine they
		// would silently do nothing. (A file holding the defaults is fine.)
		var def Config
		_, _ = toml.NewDecoder(bytes.NewReader(defaultsTOML)).Decode(&def)
		for _, k := range []struct {
			key      string
			got, def any
		}{
			{"relay.rtpengine_tout", c.Relay.Timeout, def.Relay.Timeout}, {"relay.rtpengine_retr", c.Relay.Retries, def.Relay.Retries},
			{"relay.disable_timeout", c.Relay.DisableTimeout, def.Relay.DisableTimeout},
			{"relay.timer_interval", c.Relay.TimerInterval, def.Relay.TimerInterval},
			{"relay.poll_interval", c.Relay.PollInterval, def.Relay.PollInterval},
		} {
			if k.got != k.def {
				bad(k.key, "only applies to engine = \"rtpengine\" (engine is %q)", c.Relay.Engine)
			}
		}
		if len(c.Relay.Sets) > 0 {
			bad("relay.set", "only applies to engine = \"rtpengine\" (engine is %q)", c.Relay.Engine)
		}
	}
	setIDs := map[int]bool{}
	for i, set := range c.Relay.Sets {
		if setIDs[set.ID] {
			bad("relay.set."+strconv.Itoa(i)+".id", "set %d is defined twice", set.ID)
		}
		setIDs[set.ID] = true
		if len(set.Nodes) == 0 {
			bad("relay.set."+strconv.Itoa(i)+".nodes", "set %d has no nodes", set.ID)
		}
		if set.Match != "" {
			if _, err := path.Match(set.Match, ""); err != nil {
				bad("relay.set."+strconv.Itoa(i)+".match", "%q is not a valid glob", set.Match)
			}
		}
	}
	if c.Relay.Retries < 1 {
		bad("relay.rtpengine_retr", "must be at least 1, got %d", c.Relay.Retries)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"relay.rtpengine_tout", c.Relay.Timeout}, {"relay.disable_timeout", c.Relay.DisableTimeout}, {"relay.timer_interval", c.Relay.TimerInterval}, {"relay.poll_interval", c.Relay.PollInterval}} {
		if d.v.Duration <= 0 {
			bad(d.key, "must be positive")
		}
	}
	for _, k := range []struct {
		key, val string
	}{{"media.bind", c.Media.Bind}, {"media.advertise", c.Media.Advertise}} {
		if k.val == "" {
			continue
		}
		if _, err := netip.ParseAddr(k.val); err != nil {
			bad(k.key, "%q is not an IP address", k.val)
		}
	}
	if c.Media.SetupTimeout.Duration < 0 {
		bad("media.setup_timeout", "must not be negative")
	}
	if c.Media.SessionTimeout.Duration < 0 {
		bad("media.session_timeout", "must not be negative")
	}
	if !slices.Contains([]string{"all", "any"}, c.Media.TimeoutMode) {
		bad("media.timeout_mode", "%q: want all or any", c.Media.TimeoutMode)
	}
	if !slices.Contains([]string{"strict", "learn", "off"}, c.Media.Latch) {
		bad("media.latch", "%q: want strict, learn or off", c.Media.Latch)
	}

	if c.Store.Path == "" {
		bad("store.path", "is required")
	}

	if c.API.Listen != "" {
		if _, p, err := net.SplitHostPort(c.API.Listen); err != nil {
			bad("api.listen", "%q is not HOST:PORT", c.API.Listen)
		} else if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
			bad("api.listen", "%q: bad port %q", c.API.Listen, p)
		} else if !IsLoopbackListen(c.API.Listen) && c.API.Token == "" {
			bad("api.listen", "%q is not loopback: set api.token so that the API is not open to anyone", c.API.Listen)
		}
	}

	if c.NG.Listen != "" {
		ap, err := netip.ParseAddrPort(c.NG.Listen)
		switch {
		case err != nil || ap.Port() == 0:
			bad("ng.listen", "%q is not IP:PORT", c.NG.Listen)
		case !ap.Addr().IsLoopback() && len(c.NG.Allow) == 0:
			bad("ng.listen", "%q is not loopback: list the networks allowed to send NG commands in ng.allow", c.NG.Listen)
		}
	}
	for _, a := range c.NG.Allow {
		if _, err := netip.ParsePrefix(a); err != nil {
			bad("ng.allow", "%q is not a network (e.g. \"10.0.0.0/8\")", a)
		}
	}

	if wh := c.API.Webhook; wh != "" {
		if u, err := url.Parse(wh); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("api.webhook", "%q is not an http(s) URL", wh)
		}
	}

	if n := c.Trace.Calls; n < 0 || n > 1000000 {
		bad("trace.calls", "must be 0 (no capture) to 1000000, got %d", n)
	}
	if n := c.Trace.Messages; n < 1 || n > 10000 {
		bad("trace.messages", "must be 1 to 10000, got %d", n)
	}
	if m := c.Trace.Memory; m < 64<<10 {
		b, _ := m.MarshalText()
		bad("trace.memory", "must be at least 64KiB, got %s", b)
	}

	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		bad("log.format", "%q: want text or json", c.Log.Format)
	}

	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b Error) int { return a.Line - b.Line })
	return errs
}

// ParseNetwork reads a CIDR network ("198.51.100.0/24") or a lone address
// (a /32 or /128).
func ParseNetwork(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network (CIDR) or an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
