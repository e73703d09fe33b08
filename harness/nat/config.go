package nat

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Behavior is a mapping or filtering behaviour of RFC 4787: what an
// outbound packet's mapping depends on (§4.1), or what an inbound packet
// must match to pass (§5).
type Behavior uint8

const (
	BehaviorUnknown Behavior = iota
	// EndpointIndependent: one mapping per inside endpoint; anyone may
	// send to it.
	EndpointIndependent
	// AddressDependent: a mapping per inside endpoint and destination IP;
	// only IPs the inside endpoint has sent to may send to it.
	AddressDependent
	// AddressPortDependent: a mapping per inside endpoint and destination
	// IP and port; only endpoints it has sent to may send to it.
	AddressPortDependent
)

func (b Behavior) String() string {
	switch b {
	case EndpointIndependent:
		return "endpoint-independent"
	case AddressDependent:
		return "address-dependent"
	case AddressPortDependent:
		return "address-and-port-dependent"
	}
	return "unknown"
}

// Type is one of the classic NAT types, each a pair of behaviours
// (RFC 4787 §3 maps the old names to them).
type Type uint8

const (
	TypeUnknown Type = iota
	// FullCone: endpoint-independent mapping and filtering.
	FullCone
	// RestrictedCone: endpoint-independent mapping, address-dependent filtering.
	RestrictedCone
	// PortRestrictedCone: endpoint-independent mapping, address-and-port-dependent filtering.
	PortRestrictedCone
	// Symmetric: address-and-port-dependent mapping and filtering.
	Symmetric
)

var typeNames = map[Type]string{
	FullCone:           "full-cone",
	RestrictedCone:     "restricted-cone",
	PortRestrictedCone: "port-restricted-cone",
	Symmetric:          "symmetric",
}

// String is the type's name as ParseType reads it.
func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return "unknown"
}

// ParseType reads "full-cone", "restricted-cone", "port-restricted-cone"
// or "symmetric".
func ParseType(s string) (Type, error) {
	for t, name := range typeNames {
		if name == s {
			return t, nil
		}
	}
	return TypeUnknown, fmt.Errorf("%w: unknown NAT type %q (want full-cone, restricted-cone, port-restricted-cone or symmetric)", ErrConfig, s)
}

// Config is the type's behaviours with port preservation on (as most home
// routers do it) and everything else at its default; set Inside and
// Public before New.
func (t Type) Config() Config {
	c := Config{PortPreservation: true}
	switch t {
	case FullCone:
		c.Mapping, c.Filtering = EndpointIndependent, EndpointIndependent
	case RestrictedCone:
		c.Mapping, c.Filtering = EndpointIndependent, AddressDependent
	case PortRestrictedCone:
		c.Mapping, c.Filtering = EndpointIndependent, AddressPortDependent
	case Symmetric:
		c.Mapping, c.Filtering = AddressPortDependent, AddressPortDependent
	}
	return c
}

// Defaults of Config's timeouts.
const (
	// DefaultUDPTimeout is RFC 4787 §4.3 REQ-5's floor: a mapping timer
	// MUST NOT expire in less than two minutes. Real routers sit at or
	// near the floor, and a UA's keepalives must survive them; the
	// RECOMMENDED five minutes would hide a UA that refreshes too rarely.
	DefaultUDPTimeout = 2 * time.Minute
	// DefaultTCPTimeout is RFC 5382 §5 REQ-5's floor for the established
	// connection idle-timeout: two hours and four minutes.
	DefaultTCPTimeout = 2*time.Hour + 4*time.Minute
)

// Config describes a NAT box. Mapping and Filtering are required (start
// from a Type's Config), as are Inside and Public.
type Config struct {
	Inside []netip.Addr // the inside hosts' IPs (IPv4, normally in 127/8)
	Public netip.Addr   // the box's outside IP: where its mappings live
	// View is where inside hosts see the outside world. Zero: a random
	// 127.X.0.0/16, X in 128–254, that contains neither Inside nor Public
	// nor another box's view in this process.
	View netip.Prefix

	Mapping   Behavior // RFC 4787 §4.1
	Filtering Behavior // RFC 4787 §5

	// UDPTimeout: a UDP mapping with no outbound packet for this long is
	// removed (only outbound packets refresh it, RFC 4787 §4.3 REQ-6).
	// Zero: DefaultUDPTimeout.
	UDPTimeout time.Duration
	// TCPTimeout: a TCP connection idle both ways for this long is closed.
	// Zero: DefaultTCPTimeout.
	TCPTimeout time.Duration

	// PortPreservation: a new mapping takes the inside port when it is
	// free on Public (RFC 4787 §4.2.1); otherwise, and when off, a random one.
	PortPreservation bool
	// Hairpin: a packet an inside host sends to the box's own public
	// address reaches the inside host that owns that mapping, from the
	// sender's public endpoint (RFC 4787 §6, REQ-9), through that
	// mapping's filter like any packet from outside. Off: it is dropped.
	// UDP only: TCP connections to the public address are refused.
	Hairpin bool
	// BrokenALG rewrites outbound SIP the way bad home routers do: the
	// sending host's IP becomes Public everywhere (headers and SDP) but the
	// ports stay the inside ones, and Content-Length is not fixed.
	BrokenALG bool

	Log *slog.Logger // nil: discard
}

// withDefaults checks c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Mapping == BehaviorUnknown || c.Mapping > AddressPortDependent {
		return c, fmt.Errorf("%w: mapping behaviour unset (start from a Type's Config)", ErrConfig)
	}
	if c.Filtering == BehaviorUnknown || c.Filtering > AddressPortDependent {
		return c, fmt.Errorf("%w: filtering behaviour unset (start from a Type's Config)", ErrConfig)
	}
	if len(c.Inside) == 0 {
		return c, fmt.Errorf("%w: inside: at least one inside host IP is needed", ErrConfig)
	}
	for _, a := range c.Inside {
		if !a.Is4() {
			return c, fmt.Errorf("%w: inside: %v is not an IPv4 address", ErrConfig, a)
		}
	}
	if !c.Public.Is4() {
		return c, fmt.Errorf("%w: public: %v is not an IPv4 address", ErrConfig, c.Public)
	}
	if slices.Contains(c.Inside, c.Public) {
		return c, fmt.Errorf("%w: public: %v is also an inside host", ErrConfig, c.Public)
	}
	if c.UDPTimeout < 0 || c.TCPTimeout < 0 {
		return c, fmt.Errorf("%w: timeouts must not be negative", ErrConfig)
	}
	if c.UDPTimeout == 0 {
		c.UDPTimeout = DefaultUDPTimeout
	}
	if c.TCPTimeout == 0 {
		c.TCPTimeout = DefaultTCPTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c, c.checkView()
}

func (c Config) checkView() error {
	if !c.View.IsValid() {
		return nil // chosen by claimView
	}
	if !c.View.Addr().Is4() || c.View.Bits() > 30 {
		return fmt.Errorf("%w: view: %v must be an IPv4 prefix of /30 or wider", ErrConfig, c.View)
	}
	for _, a := range append([]netip.Addr{c.Public}, c.Inside...) {
		if c.View.Contains(a) {
			return fmt.Errorf("%w: view: %v contains %v", ErrConfig, c.View, a)
		}
	}
	return nil
}

// viewsInUse are the view prefixes of this process's open boxes, so that
// two boxes in one test binary never show the world at the same address.
var viewsInUse struct {
	sync.Mutex
	m map[netip.Prefix]bool
}

// claimView reserves c.View, or a random free default one, for a box.
func claimView(c Config) (netip.Prefix, error) {
	viewsInUse.Lock()
	defer viewsInUse.Unlock()
	if viewsInUse.m == nil {
		viewsInUse.m = map[netip.Prefix]bool{}
	}
	if c.View.IsValid() {
		p := c.View.Masked()
		for q := range viewsInUse.m {
			if q.Overlaps(p) {
				return p, fmt.Errorf("%w: view: %v overlaps another box's %v", ErrConfig, p, q)
			}
		}
		viewsInUse.m[p] = true
		return p, nil
	}
	start := rand.IntN(127)
	for i := range 127 {
		x := byte(128 + (start+i)%127)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{127, x, 0, 0}), 16)
		c.View = p
		if viewsInUse.m[p] || c.checkView() != nil {
			continue
		}
		viewsInUse.m[p] = true
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("%w: view: no free 127.X.0.0/16 left", ErrConfig)
}

func releaseView(p netip.Prefix) {
	viewsInUse.Lock()
	defer viewsInUse.Unlock()
	delete(viewsInUse.m, p)
}
