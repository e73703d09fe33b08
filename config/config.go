// Package config owns sipanchor's TOML configuration: the schema, the embedded
// defaults, loading a file over them and validating the result. Every error
// names the file, the line and the key, so an operator can fix it at once.
// Loading has no side effects: nothing is bound or opened here.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

//go:embed defaults.toml
var defaultsTOML []byte

// Defaults returns the embedded default configuration file, with its comments.
func Defaults() []byte { return bytes.Clone(defaultsTOML) }

// Config is the whole of sipanchor's configuration.
type Config struct {
	SIP       SIP       `toml:"sip"`
	Registrar Registrar `toml:"registrar"`
	NAT       NAT       `toml:"nat"`
	Routes    []Route   `toml:"route"`
	Peers     []Peer    `toml:"peer"`
	Limits    Limits    `toml:"limits"`
	Relay     Relay     `toml:"relay"`
	NG        NG        `toml:"ng"`
	Media     Media     `toml:"media"`
	Store     Store     `toml:"store"`
	API       API       `toml:"api"`
	Trace     Trace     `toml:"trace"`
	Log       Log       `toml:"log"`

	// Listeners is SIP.Listen parsed; filled by Validate.
	Listeners []Listener `toml:"-"`

	file  string
	lines positions
}

// KeyError reports a mistake found in a key's value by another package
// (relay flags, say) the way Load reports its own: FILE:LINE: key: what.
func (c *Config) KeyError(key string, err error) error {
	return Errors{{File: c.file, Line: c.lines.find(toml.Key(strings.Split(key, "."))), Key: key, Msg: err.Error()}}
}

// Peer is one [[peer]]: a trusted neighbour (trunk, PBX) recognised by the
// networks its requests come from. Its requests are not challenged and may
// go anywhere the routes lead; everyone else's may leave the local domains
// only as an authenticated local user.
type Peer struct {
	Name     string   `toml:"name"`
	Networks []string `toml:"networks"`
	MaxCalls int      `toml:"max_calls"` // calls from this peer at once; 0 = no limit

	// Prefixes is Networks parsed; filled by Validate.
	Prefixes []netip.Prefix `toml:"-"`
}

// Limits is the [limits] table: flood protection per source address (like
// Kamailio's pike) and the limits on new calls.
type Limits struct {
	// A source sending more than MaxRequests requests within Window is
	// banned for BanTime: everything it sends is dropped unread.
	Window      Duration `toml:"window"`
	MaxRequests int      `toml:"max_requests"`
	BanTime     Duration `toml:"ban_time"`
	MaxSources  int      `toml:"max_sources"`

	MaxCalls          int      `toml:"max_calls"`
	MaxCallsPerSource int      `toml:"max_calls_per_source"`
	MaxCallsPerUser   int      `toml:"max_calls_per_user"`
	MaxCPS            int      `toml:"max_cps"`
	MaxPendingInvites int      `toml:"max_pending_invites"`
	MaxQueueDelay     Duration `toml:"max_queue_delay"`
	RetryAfter        Duration `toml:"retry_after"`

	// Memory is the Go runtime's soft memory limit; 0 = none.
	Memory Size `toml:"memory"`
}

// MinMemory is the smallest [limits] memory accepted.
const MinMemory Size = 64 << 20

// SIP is the [sip] table.
type SIP struct {
	Listen       []string `toml:"listen"`
	Advertise    string   `toml:"advertise"`
	Domains      []string `toml:"domains"`
	DefaultRoute string   `toml:"default_route"`
	Resolver     string   `toml:"resolver"`
	T1           Duration `toml:"t1"`

	// Accepted TCP connections: a message begun must be whole within
	// TCPMessageTimeout; one silent for TCPIdleTimeout is closed unless a
	// binding or dialog needs it (0 = never); one source IP may hold
	// TCPMaxPerSource at once (0 = no limit; trusted peers are exempt).
	TCPMessageTimeout Duration `toml:"tcp_message_timeout"`
	TCPIdleTimeout    Duration `toml:"tcp_idle_timeout"`
	TCPMaxPerSource   int      `toml:"tcp_max_per_source"`
}

// Registrar is the [registrar] table.
type Registrar struct {
	MinExpires     int      `toml:"min_expires"`
	MaxExpires     int      `toml:"max_expires"`
	DefaultExpires int      `toml:"default_expires"`
	Auth           bool     `toml:"auth"`
	Realm          string   `toml:"realm"`
	AuthAlgorithms []string `toml:"auth_algorithms"`
	// AllowNetworks lists the source networks REGISTERs are accepted
	// from; empty = anywhere.
	AllowNetworks []string `toml:"allow_networks"`
	// MaxContacts bounds the bindings of one address-of-record.
	MaxContacts int `toml:"max_contacts"`

	// AllowPrefixes is AllowNetworks parsed; filled by Validate.
	AllowPrefixes []netip.Prefix `toml:"-"`
}

// NAT is the [nat] table.
type NAT struct {
	KeepaliveInterval Duration `toml:"keepalive_interval"`
	KeepaliveFailures int      `toml:"keepalive_failures"`
}

// Route is one [[route]] entry.
type Route struct {
	Match string `toml:"match"`
	To    string `toml:"to"`
}

// Relay is the [relay] table: which calls get their media anchored and how.
type Relay struct {
	Engage      string   `toml:"engage"`
	CallerFlags string   `toml:"caller_flags"`
	CalleeFlags string   `toml:"callee_flags"`
	Lifetime    Duration `toml:"lifetime"`

	Engine         string     `toml:"engine"`
	Sets           []RelaySet `toml:"set"`
	Timeout        Duration   `toml:"rtpengine_tout"`
	Retries        int        `toml:"rtpengine_retr"`
	DisableTimeout Duration   `toml:"disable_timeout"`
	TimerInterval  Duration   `toml:"timer_interval"`
	PollInterval   Duration   `toml:"poll_interval"`
}

// RelaySet is one [[relay.set]] of rtpengine nodes.
type RelaySet struct {
	ID    int      `toml:"id"`
	Nodes []string `toml:"nodes"`
	// Match is a glob over "sip:user@host" of a call's initial INVITE: the
	// first set that matches takes the call; empty = a default set.
	Match string `toml:"match"`
}

// NG is the [ng] table: rtpengine's NG protocol served by sipanchor's relay.
type NG struct {
	Listen string   `toml:"listen"`
	Allow  []string `toml:"allow"`
}

// Media is the [media] table.
type Media struct {
	PortMin        int      `toml:"port_min"`
	PortMax        int      `toml:"port_max"`
	Bind           string   `toml:"bind"`
	Advertise      string   `toml:"advertise"`
	SetupTimeout   Duration `toml:"setup_timeout"`
	SessionTimeout Duration `toml:"session_timeout"`
	// TimeoutMode is "all" (the call ends when every side is silent) or
	// "any" (when one side that should send is silent).
	TimeoutMode string `toml:"timeout_mode"`
	// Latch is "strict" (media latches only from where the side is
	// expected to send from), "learn" (from the first packet) or "off".
	Latch string `toml:"latch"`
}

// Store is the [store] table.
type Store struct {
	Path string `toml:"path"`
	Sync string `toml:"sync"` // "normal" (survives kill -9) or "full" (fsync: survives power loss)
}

// API is the [api] table.
type API struct {
	Listen  string `toml:"listen"`
	Token   string `toml:"token"`
	Webhook string `toml:"webhook"`
}

// Trace is the [trace] table: the SIP messages of each call kept in
// memory, read through the API (GET /api/v1/sessions/{callid}/trace).
type Trace struct {
	// Calls is how many calls (Call-IDs) are kept, the oldest dropped
	// first; 0 = nothing is captured.
	Calls int `toml:"calls"`
	// Messages is how many messages of one call are kept: its first ones
	// (up to 8, half of Messages at most) and its most recent.
	Messages int `toml:"messages"`
	// Memory bounds the bytes of all kept messages: past it the oldest
	// calls are dropped, whatever Calls says.
	Memory Size `toml:"memory"`
}

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Duration is a time.Duration written as a Go duration string ("30s", "1m30s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. \"30s\"): %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Size is a number of bytes written with a unit: "512MiB", "2GiB",
// "800MB", or "0".
type Size int64

var sizeUnits = []struct {
	suffix string
	n      int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	t := strings.TrimSpace(string(b))
	mult := int64(0)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.n
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || (mult == 0 && n != 0) || (mult > 0 && n > math.MaxInt64/mult) {
		return fmt.Errorf("not a size (want e.g. \"512MiB\" or \"0\"): %q", b)
	}
	*s = Size(n * max(mult, 1))
	return nil
}

// MarshalText implements encoding.TextMarshaler: the largest binary unit
// that divides it.
func (s Size) MarshalText() ([]byte, error) {
	v := int64(s)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.n == 0 {
			return []byte(strconv.FormatInt(v/u.n, 10) + u.suffix), nil
		}
	}
	if v == 0 {
		return []byte("0"), nil
	}
	return []byte(strconv.FormatInt(v, 10) + "B"), nil
}

// Load reads the embedded defaults, then the file at path over them (when path
// is not empty), rejects unknown keys and validates the result.
func Load(path string) (*Config, error) {
	var src []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		src = b
	}
	return Parse(path, src)
}

// Parse is Load for a file already read; name is used in error messages.
func Parse(name string, src []byte) (*Config, error) {
	return ParseOver(nil, name, src)
}

// ParseOver is Parse with one more layer of defaults, base, read between
// the embedded defaults and src: an embedder's own defaults (the test
// harness listens on ephemeral ports, for one) that src may override.
func ParseOver(base []byte, name string, src []byte) (*Config, error) {
	var c Config
	if _, err := toml.NewDecoder(bytes.NewReader(defaultsTOML)).Decode(&c); err != nil {
		return nil, fmt.Errorf("embedded defaults: %w", err) // a build defect
	}
	if base != nil {
		md, err := toml.NewDecoder(bytes.NewReader(base)).Decode(&c)
		if err != nil {
			return nil, fmt.Errorf("base defaults: %w", err)
		}
		if u := md.Undecoded(); len(u) > 0 {
			return nil, fmt.Errorf("base defaults: unknown key %s", u[0])
		}
	}
	c.file = name
	if src == nil {
		return &c, c.validate(nil, name)
	}
	lines := keyLines(string(src))
	md, err := toml.NewDecoder(bytes.NewReader(src)).Decode(&c)
	if err != nil {
		return nil, decodeError(name, lines, err)
	}
	var errs Errors
	for _, k := range md.Undecoded() {
		errs = append(errs, Error{File: name, Line: lines.find(k), Key: k.String(), Msg: "unknown key"})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	c.lines = lines
	return &c, c.validate(lines, name)
}

// decodeError turns the toml package's errors into FILE:LINE: key: what.
func decodeError(name string, lines positions, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		// Type mismatches come as "toml: line N (last key K): what".
		if m := typeErr.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			if line == 0 {
				line = lines.find(toml.Key(strings.Split(m[2], ".")))
			}
			return Errors{{File: name, Line: line, Key: m[2], Msg: m[3]}}
		}
		return Errors{{File: name, Msg: err.Error()}}
	}
	msg := pe.Message
	// The toml package says "toml: line N (last key K): ..." in some messages.
	if i := strings.Index(msg, "): "); strings.HasPrefix(msg, "toml: ") && i > 0 {
		msg = msg[i+3:]
	}
	e := Error{File: name, Line: pe.Position.Line, Msg: msg}
	if strings.Contains(msg, `got '\n'`) && e.Line > 1 {
		e.Line-- // the lexer has counted the newline it choked on
	}
	// LastKey is the key being decoded for a bad value, but only the last
	// key read before a syntax error: name it only when it is on that line.
	if pe.LastKey != "" {
		if kl := lines.find(toml.Key(strings.Split(pe.LastKey, "."))); kl == e.Line || e.Line == 0 {
			e.Key, e.Line = pe.LastKey, kl
		}
	}
	return Errors{e}
}

var typeErr = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// Error is one configuration mistake.
type Error struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every mistake found in one file, in file order where known.
type Errors []Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}
