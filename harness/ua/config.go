package ua

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Config says who a UA is, where it sends and how it misbehaves.
type Config struct {
	// User and Domain make the address of record sip:User@Domain.
	User, Domain string
	// Password answers 401/407 digest (MD5) challenges; empty = none.
	Password string
	// Local is the IP the SIP socket and the RTP sockets are bound to, and
	// that Contact, Via and SDP name (a UA behind NAT names its private
	// address). It must be a specific address, not 0.0.0.0.
	Local netip.Addr
	// SIPPort is the local SIP port; 0 = ephemeral.
	SIPPort int
	// Server is where every request goes (an outbound proxy), in-dialog
	// requests too: their route set is sent as Route headers (loose routing).
	Server netip.AddrPort
	// Transport is "udp" (the default) or "tcp" (one connection to Server,
	// opened by New).
	Transport string
	// OnlyFrom, when set, drops every packet (SIP, RTP, STUN) whose source
	// is outside it: only the NAT box can reach the UA, as with a real
	// private address. Zero = accept from anyone.
	OnlyFrom netip.Prefix
	// STUN, when set, is a STUN server: each RTP socket learns its public
	// mapping with an RFC 5389 Binding request, and the SDP names that
	// mapping (c= and m=), as a STUN-using UA does.
	STUN netip.AddrPort
	// Faults make the UA misbehave on purpose.
	Faults Faults
	// Log receives one line per notable event; nil = discard.
	Log *slog.Logger
}

// Faults are deliberate deviations from the RFCs, so that a test can show
// that a scenario fails for the right reason.
type Faults struct {
	// NoRport leaves ;rport out of Via (RFC 3581 not used).
	NoRport bool
	// AsymmetricRTP sends RTP from a second socket, not from the one its
	// SDP names (the UA ignores symmetric RTP, RFC 4961).
	AsymmetricRTP bool
	// NoKeepalive makes KeepAlive do nothing.
	NoKeepalive bool
}

// AnswerPolicy is how a UA answers incoming INVITEs.
type AnswerPolicy struct {
	// Code is the final status: 200 (the default when 0) answers with SDP;
	// 300 and more rejects (e.g. 486).
	Code int
	// Reason is the reason phrase; empty = a standard one.
	Reason string
	// RingFor sends 180 Ringing and waits this long before the final
	// response (a CANCEL may come meanwhile); 0 = final response at once.
	RingFor time.Duration
}

// Registration is what a 2xx to REGISTER told the UA.
type Registration struct {
	// Expires is the binding's lifetime granted by the registrar: the
	// expires parameter of the UA's Contact in the 200, else its Expires
	// header.
	Expires time.Duration
	// Received and RPort are the top Via's received and rport parameters
	// in the 200: where the registrar saw the REGISTER come from. Zero
	// when absent.
	Received netip.Addr
	RPort    int
}

const (
	t1 = 500 * time.Millisecond // RFC 3261 T1
	t2 = 4 * time.Second        // RFC 3261 T2
	// txTimeout is 64*T1, Timers B, F and H.
	txTimeout = 64 * t1
)

// check fills defaults and rejects what cannot work.
func (c *Config) check() error {
	c.Transport = strings.ToLower(c.Transport)
	if c.Transport == "" {
		c.Transport = "udp"
	}
	if c.Transport != "udp" && c.Transport != "tcp" {
		return fmt.Errorf("ua: transport %q: want udp or tcp", c.Transport)
	}
	if !c.Local.IsValid() || c.Local.IsUnspecified() {
		return fmt.Errorf("ua: local address %v: want a specific IP", c.Local)
	}
	if !c.Server.IsValid() {
		return fmt.Errorf("ua: server address %v: missing", c.Server)
	}
	if c.User == "" || c.Domain == "" {
		return fmt.Errorf("ua: user %q, domain %q: both needed", c.User, c.Domain)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}
