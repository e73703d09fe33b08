package media

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config is the builtin relay's configuration.
type Config struct {
	PortMin, PortMax int
	Bind             netip.Addr // media sockets bind here (e.g. 0.0.0.0)
	Advertise        netip.Addr // address written into rewritten SDP
	// SetupTimeout ends a session that has had no media since it was
	// answered; SessionTimeout one whose media stopped (rtpproxy -W / -T).
	SetupTimeout, SessionTimeout time.Duration
	// RingTimeout ends a session that was offered but never answered.
	RingTimeout time.Duration
	// TimeoutMode says whose silence SessionTimeout measures; the zero
	// value is TimeoutAll.
	TimeoutMode TimeoutMode
	// Latch says whose packets fix where a side is sent to; the zero value
	// is LatchStrict. LatchWindow is how long after its offer or answer a
	// latched side may move to another expected IP; zero =
	// DefaultLatchWindow.
	Latch       LatchMode
	LatchWindow time.Duration
	Log         *slog.Logger
}

// Side is one end of a relayed call.
type Side uint8

const (
	SideUnknown Side = iota
	SideA            // the caller (From-tag side)
	SideB            // the callee
)

func (s Side) String() string {
	switch s {
	case SideA:
		return "caller"
	case SideB:
		return "callee"
	}
	return "unknown"
}

// Relay owns the media port range and every relayed session. One sweeper
// goroutine applies the timeouts once a second.
type Relay struct {
	cfg  Config
	pool *portPool
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool

	exhausted atomic.Int64 // allocations refused for lack of ports
	ended     Totals       // counters of ended sessions (under mu)

	stop chan struct{}
	wg   sync.WaitGroup
}

// NewRelay checks cfg and starts the sweeper; Close stops everything.
func NewRelay(cfg Config) (*Relay, error) {
	if cfg.PortMin < 1 || cfg.PortMax > 65535 || cfg.PortMax-cfg.PortMin < 1 {
		return nil, fmt.Errorf("media ports %d..%d: %w", cfg.PortMin, cfg.PortMax, ErrNoPorts)
	}
	if !cfg.Bind.IsValid() {
		cfg.Bind = netip.IPv4Unspecified()
	}
	if !cfg.Advertise.IsValid() {
		return nil, fmt.Errorf("media: no address to advertise")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.TimeoutMode == TimeoutUnknown {
		cfg.TimeoutMode = TimeoutAll // the rule from before modes existed
	}
	if cfg.Latch == LatchUnknown {
		cfg.Latch = LatchStrict // RTP Bleed: latch only on expected sources
	}
	if cfg.LatchWindow == 0 {
		cfg.LatchWindow = DefaultLatchWindow
	}
	r := &Relay{cfg: cfg, pool: newPortPool(cfg.Bind, cfg.PortMin, cfg.PortMax), log: cfg.Log,
		sessions: map[string]*Session{}, stop: make(chan struct{})}
	r.wg.Go(r.sweep)
	return r, nil
}

// Advertise is the address put into rewritten SDP.
func (r *Relay) Advertise() netip.Addr { return r.cfg.Advertise }

// Open returns the session with id, creating it if needed.
func (r *Relay) Open(id string) (*Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if s, ok := r.sessions[id]; ok {
		return s, nil
	}
	s := &Session{id: id, r: r, log: r.log.With("session", id), created: time.Now(), done: make(chan struct{})}
	r.sessions[id] = s
	return s, nil
}

// Get returns an existing session.
func (r *Relay) Get(id string) (*Session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sessions[id]
	return s, ok
}

// Delete ends a session and returns its final stats.
func (r *Relay) Delete(id string) (*Stats, error) {
	s, ok := r.Get(id)
	if !ok {
		return nil, fmt.Errorf("%s: %w", id, ErrNoSession)
	}
	return s.end(ErrDeleted), nil
}

// Sessions lists the live sessions.
func (r *Relay) Sessions() []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Session) int { return a.created.Compare(b.created) })
	return out
}

// Count is the number of live sessions.
func (r *Relay) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// PortPairs reports the RTP/RTCP pairs in use and in the range.
func (r *Relay) PortPairs() (used, total int) { return r.pool.inUse(), r.pool.pairs() }

// Close ends every session and stops the sweeper.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	all := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		all = append(all, s)
	}
	r.mu.Unlock()
	for _, s := range all {
		s.end(ErrClosed)
	}
	close(r.stop)
	r.wg.Wait()
	return nil
}

func (r *Relay) sweep() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			for _, s := range r.Sessions() {
				if why, err := s.expired(now); err != nil {
					s.log.Info("media timeout", "why", why, "mode", r.cfg.TimeoutMode.String())
					s.end(err)
				}
			}
		}
	}
}

// Session is one relayed call leg pair: for each m= line a stream with an
// RTP/RTCP port pair facing each side.
type Session struct {
	id  string
	r   *Relay
	log *slog.Logger

	mu       sync.Mutex
	streams  []*stream
	created  time.Time
	answered time.Time
	ended    bool
	err      error
	done     chan struct{}
}

type stream struct {
	a, b [2]*endpoint // [0] RTP, [1] RTCP; a faces the caller, b the callee
	// What each side's latest SDP says ([0] caller, [1] callee), and since
	// when each has been expected to send (zero while it is not). Under the
	// session's mu: signalling writes them, the sweeper reads them.
	flow  [2]flow
	since [2]time.Time
	// events: the telephone-event payload types each side's SDP declared.
	events [2]ptSet
}

// ID is the session's key.
func (s *Session) ID() string { return s.id }

// Done is closed when the session ends; Err then says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is nil while the session lives, then ErrDeleted, ErrMediaTimeout
// (wrapped with the side that went silent under TimeoutAny) or ErrClosed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Apply records an SDP (offer or answer) sent by side from and returns,
// for each of its m= lines, the relay RTP port to write into it (the port
// facing the other side, which will send there), or 0 for a rejected
// stream. symmetric selects latching for from's side (never with
// LatchOff). An offer may add
// streams; an answer may not.
func (s *Session) Apply(from Side, info *SDPInfo, symmetric, answer bool) ([]int, error) {
	if from != SideA && from != SideB {
		return nil, fmt.Errorf("apply: side %v", from)
	}
	symmetric = symmetric && s.r.cfg.Latch != LatchOff
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, fmt.Errorf("%s: %w", s.id, s.err)
	}
	if answer && len(info.Streams) > len(s.streams) {
		return nil, fmt.Errorf("answer has %d streams, offer had %d: %w", len(info.Streams), len(s.streams), ErrStreams)
	}
	ports := make([]int, len(info.Streams))
	for i, si := range info.Streams {
		if i >= len(s.streams) {
			if si.Port == 0 {
				s.streams = append(s.streams, nil)
				continue
			}
			st, err := s.newStream()
			if err != nil {
				return nil, err
			}
			s.streams = append(s.streams, st)
		}
		st := s.streams[i]
		if si.Port == 0 {
			if st != nil {
				st.flow[from-1] = 0
			}
			continue
		}
		if st == nil { // a stream rejected earlier and offered again
			var err error
			if st, err = s.newStream(); err != nil {
				return nil, err
			}
			s.streams[i] = st
		}
		mine, theirs := st.a, st.b
		if from == SideB {
			mine, theirs = st.b, st.a
		}
		rtcpPort := si.RTCPPort
		if si.RTCPMux || rtcpPort == 0 {
			rtcpPort = si.Port
		}
		target := si.Addr
		if si.Target.IsValid() {
			target = si.Target
		}
		expect := make([]netip.Addr, len(si.Expect))
		for j, a := range si.Expect {
			expect[j] = a.Unmap()
		}
		mine[0].setHint(netip.AddrPortFrom(si.Addr.Unmap(), uint16(si.Port)), netip.AddrPortFrom(target.Unmap(), uint16(si.Port)), expect, symmetric)
		mine[1].setHint(netip.AddrPortFrom(si.Addr.Unmap(), uint16(rtcpPort)), netip.AddrPortFrom(target.Unmap(), uint16(rtcpPort)), expect, symmetric)
		mine[0].mux.Store(si.RTCPMux)
		mine[1].mux.Store(si.RTCPMux)
		mine[0].stats.setClockRate(si.ClockRate)
		st.setEvents(from, ptSetOf(si.TelephoneEvents...))
		st.flow[from-1] = flowOf(si)
		ports[i] = theirs[0].port
	}
	s.expectFrom(time.Now())
	return ports, nil
}

// MarkAnswered starts the setup clock (no media since the answer) once:
// the call was answered. Before it only the ring timeout applies, however
// long early media runs or pauses.
func (s *Session) MarkAnswered() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.answered.IsZero() {
		s.answered = time.Now()
	}
}

// newStream allocates a port pair for each side and starts their readers.
func (s *Session) newStream() (*stream, error) {
	var eps [2][2]*endpoint
	for side := range 2 {
		rtp, rtcp, port, err := s.r.pool.alloc()
		if err != nil {
			if side == 1 {
				s.closeEndpoints(eps[0][:])
			}
			// One line for the first and every 1000th: an overloaded
			// range must not flood the log.
			if n := s.r.exhausted.Add(1); n == 1 || n%1000 == 0 {
				s.log.Warn("media ports exhausted", "err", err, "refused", n)
			}
			return nil, err
		}
		eps[side][0] = &endpoint{conn: rtp, port: port, rtp: true, sess: s}
		eps[side][1] = &endpoint{conn: rtcp, port: port + 1, sess: s}
	}
	st := &stream{a: eps[0], b: eps[1]}
	st.link()
	for _, e := range st.all() {
		e.symmetric.Store(true)
		go e.run()
	}
	return st, nil
}

// link pairs each socket with the other side's and with its sibling.
func (st *stream) link() {
	for i := range 2 {
		st.a[i].other, st.b[i].other = st.b[i], st.a[i]
	}
	for _, side := range [][2]*endpoint{st.a, st.b} {
		side[0].sibling, side[1].sibling = side[1], side[0]
	}
}

// setEvents records the telephone-event payload types side declared.
// Both sides' RTP sockets decode the union: RFC 3264 §5.1 has the
// receiver's SDP name the payload types it gets, while many UAs send on
// the numbers of their own; the two agree in all but odd calls.
func (st *stream) setEvents(side Side, pts ptSet) {
	st.events[side-1] = pts
	all := st.events[0].union(st.events[1])
	st.a[0].stats.setEvents(all)
	st.b[0].stats.setEvents(all)
}

func (st *stream) all() []*endpoint { return []*endpoint{st.a[0], st.a[1], st.b[0], st.b[1]} }

func (s *Session) closeEndpoints(eps []*endpoint) {
	for i, e := range eps {
		if e == nil {
			continue
		}
		e.conn.Close()
		if i == 0 {
			s.r.pool.free(e.port)
		}
	}
}

// latched is called by a reader when its side's source is learnt or moves.
func (s *Session) latched(e *endpoint, src netip.AddrPort, old *netip.AddrPort) {
	kind := "rtcp"
	if e.rtp {
		kind = "rtp"
	}
	if old == nil {
		s.log.Info("media latched", "port", e.port, "kind", kind, "source", src.String())
	} else {
		s.log.Info("media re-latched", "port", e.port, "kind", kind, "source", src.String(), "was", old.String())
	}
}

// end closes the session's sockets, frees its ports and returns its stats.
func (s *Session) end(why error) *Stats {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return s.Stats()
	}
	s.ended = true
	s.err = why
	streams := s.streams
	s.mu.Unlock()
	st := s.Stats()
	for _, x := range streams {
		if x != nil {
			s.closeEndpoints(x.a[:])
			s.closeEndpoints(x.b[:])
		}
	}
	s.r.mu.Lock()
	if s.r.sessions[s.id] == s {
		delete(s.r.sessions, s.id)
	}
	s.r.ended.add(st)
	s.r.ended.Sessions++
	s.r.mu.Unlock()
	close(s.done)
	st.Ended = time.Now()
	s.log.Info("media session ended", "reason", why.Error(), "streams", len(streams))
	return st
}

// Stats is a session's counters.
type Stats struct {
	ID       string        `json:"id"`
	Created  time.Time     `json:"created"`
	Answered time.Time     `json:"answered,omitzero"`
	Ended    time.Time     `json:"ended,omitzero"`
	Streams  []StreamStats `json:"streams"`
}

// StreamStats is one m= line: what each side sent and received.
type StreamStats struct {
	Index      int           `json:"index"`
	Caller     EndpointStats `json:"caller"` // RTP socket facing the caller
	Callee     EndpointStats `json:"callee"`
	CallerRTCP EndpointStats `json:"caller_rtcp"`
	CalleeRTCP EndpointStats `json:"callee_rtcp"`
}

// Stats reads the session's counters (safe while packets flow).
func (s *Session) Stats() *Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &Stats{ID: s.id, Created: s.created, Answered: s.answered}
	for i, st := range s.streams {
		if st == nil {
			continue
		}
		out.Streams = append(out.Streams, StreamStats{Index: i,
			Caller: st.a[0].snapshot(), Callee: st.b[0].snapshot(),
			CallerRTCP: st.a[1].snapshot(), CalleeRTCP: st.b[1].snapshot()})
	}
	return out
}

// Totals are counters over the relay's whole life.
type Totals struct {
	Packets, Bytes                uint64 // forwarded (counted once, as sent)
	Strangers, Unexpected, Unsent uint64 // dropped
	Sessions                      uint64 // sessions ended
}

// Totals adds the live sessions' counters to those of ended ones.
func (r *Relay) Totals() Totals {
	r.mu.Lock()
	t := r.ended
	live := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		live = append(live, s)
	}
	r.mu.Unlock()
	for _, s := range live {
		t.add(s.Stats())
	}
	return t
}

func (t *Totals) add(st *Stats) {
	for _, x := range st.Streams {
		for _, e := range []EndpointStats{x.Caller, x.Callee, x.CallerRTCP, x.CalleeRTCP} {
			t.Packets += e.PacketsOut
			t.Bytes += e.BytesOut
			t.Strangers += e.Strangers
			t.Unexpected += e.Unexpected
			t.Unsent += e.Unsent
		}
	}
}
