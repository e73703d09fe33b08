package sip

import (
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"sipanchor/config"
	"sipanchor/dialog"

	"github.com/emiago/sipgo/sip"
)

// streamHygiene bounds the life of accepted TCP connections ([sip] tcp_*),
// as Kamailio's tcp_msg_read_timeout, tcp_connection_lifetime and
// tcp_accept_iplimit do: a message begun must be whole within message; a
// connection that has brought no message for idle is closed unless
// something still needs it; one source may hold a bounded number.
type streamHygiene struct {
	message   time.Duration
	idle      time.Duration // 0 = idle connections are kept
	perSource *connCounter
	log       *slog.Logger

	// Asked before an idle connection is closed: a binding registered
	// through it, or a dialog with a side at it, keeps it open.
	bindings *Location
	dialogs  dialogSources // nil without a dialog layer
}

// dialogSources is what the idle check asks the dialog layer
// (*dialog.Manager): whether a live dialog has a side at remote.
type dialogSources interface {
	HasSource(remote netip.AddrPort) bool
}

func newStreamHygiene(s config.SIP, trusted []netip.Prefix, loc *Location, dialogs *dialog.Manager, log *slog.Logger) *streamHygiene {
	h := &streamHygiene{message: s.TCPMessageTimeout.Duration, idle: s.TCPIdleTimeout.Duration,
		perSource: newConnCounter(s.TCPMaxPerSource, trusted, log), log: log, bindings: loc}
	if dialogs != nil {
		h.dialogs = dialogs
	}
	return h
}

// inUse: a silent connection from remote carries a live binding or dialog.
func (h *streamHygiene) inUse(remote netip.AddrPort) bool {
	return h.bindings.HasFlow("tcp", remote) || (h.dialogs != nil && h.dialogs.HasSource(remote))
}

// connCounter counts the open connections of each source IP and refuses
// those beyond max; trusted networks are not counted. A source is in the
// table only while it has connections open, so the table is bounded by
// them. Each source's refusals are logged once, and their number when its
// last connection closes.
type connCounter struct {
	max     int // 0 = no limit
	exempt  []netip.Prefix
	log     *slog.Logger
	refused atomic.Uint64

	mu sync.Mutex
	m  map[netip.Addr]*connSource
}

type connSource struct {
	open    int
	refused uint64
}

func newConnCounter(max int, exempt []netip.Prefix, log *slog.Logger) *connCounter {
	return &connCounter{max: max, exempt: exempt, log: log, m: map[netip.Addr]*connSource{}}
}

// take counts a new connection from a. It returns the function that ends
// the count when the connection closes, or false when a already has max
// connections: the new one is to be closed at once.
func (cc *connCounter) take(a netip.Addr) (release func(), ok bool) {
	a = a.Unmap()
	if cc == nil || cc.max == 0 || cc.isExempt(a) {
		return func() {}, true
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	s := cc.m[a]
	if s == nil {
		s = &connSource{}
		cc.m[a] = s
	}
	if s.open >= cc.max {
		if s.refused == 0 {
			cc.log.Warn("TCP connections over the per-source limit closed", "peer", a.String(), "limit", cc.max)
		}
		s.refused++
		cc.refused.Add(1)
		return nil, false
	}
	s.open++
	return func() { cc.release(a) }, true
}

func (cc *connCounter) release(a netip.Addr) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	s := cc.m[a]
	if s == nil {
		return
	}
	if s.open--; s.open > 0 {
		return
	}
	delete(cc.m, a)
	if s.refused > 0 {
		cc.log.Info("TCP source's connections all closed", "peer", a.String(), "refused", s.refused)
	}
}

func (cc *connCounter) isExempt(a netip.Addr) bool {
	for _, p := range cc.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// TCPRefused is the number of TCP connections closed at once because
// their source already had [sip] tcp_max_per_source open.
func (p *Proxy) TCPRefused() uint64 { return p.tcp.perSource.refused.Load() }

// open admits an accepted connection: false when its source is over its
// limit. It starts the idle clock.
func (h *streamHygiene) open(c *screenConn, now time.Time) bool {
	c.remote, _ = addrPortOf(c.RemoteAddr())
	release, ok := h.perSource.take(c.remote.Addr())
	if !ok {
		return false
	}
	c.release = release
	c.active = now
	return true
}

// deadline is when the connection's next read must have ended: the
// message begun must be whole by begun+message; with none begun, a
// connection is looked at once it has been idle that long.
func (h *streamHygiene) deadline(c *screenConn) time.Time {
	switch {
	case !c.begun.IsZero():
		return c.begun.Add(h.message)
	case h.idle > 0:
		return c.active.Add(h.idle)
	}
	return time.Time{}
}

// timedOut decides what a read that hit its deadline at now means: a
// message that did not arrive whole in time ends the connection (answered
// 400 when its headers came and it can be); an idle connection is closed
// unless it is in use, and then watched for another idle period.
func (h *streamHygiene) timedOut(c *screenConn, now time.Time) {
	switch {
	case !c.begun.IsZero():
		if now.Before(c.begun.Add(h.message)) {
			return
		}
		var reply []byte
		if c.size > 0 {
			reply = scanMessage(c.in).response(sip.StatusBadRequest, "Incomplete Message", "")
		}
		c.close("Incomplete Message", reply)
	case h.idle > 0:
		if now.Before(c.active.Add(h.idle)) {
			return
		}
		if h.inUse(c.remote) {
			c.active = now
			return
		}
		h.log.Debug("idle TCP connection closed", "peer", c.remote.String(), "idle", h.idle.String())
		c.in, c.size, c.scanned = nil, 0, 0
		c.err = io.EOF // sipgo closes the connection
	}
}

// Close ends the per-source count of c once, however often it is
// closed (sipgo may close it from its reader and from its pool).
func (c *screenConn) Close() error {
	c.closed.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return c.Conn.Close()
}
