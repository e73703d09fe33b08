package ua

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// UA is one SIP user agent on its own socket. Its methods may be called
// from any goroutine.
type UA struct {
	cfg  Config
	log  *slog.Logger
	conn sipConn
	addr netip.AddrPort

	mu       sync.Mutex
	isClosed bool
	clients  map[string]*clientTx     // by branch and method
	served   *lru                     // last response per request branch and method
	sentACKs *lru                     // ACK per Call-ID and CSeq, for retransmitted finals
	awaitACK map[string]chan struct{} // closed when the ACK of a final response comes
	calls    map[string]*Call         // by Call-ID
	answer   AnswerPolicy
	reg      regState
	keepStop chan struct{}

	incoming chan *Call
	closed   chan struct{}
	wg       sync.WaitGroup
}

// New opens the UA's SIP socket (over TCP: connects to Server) and starts
// reading it.
func New(cfg Config) (*UA, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	conn, err := listen(&cfg)
	if err != nil {
		return nil, err
	}
	u := &UA{
		cfg: cfg, conn: conn, addr: conn.local(),
		clients: map[string]*clientTx{}, served: newLRU(512), sentACKs: newLRU(128), awaitACK: map[string]chan struct{}{},
		calls: map[string]*Call{}, answer: AnswerPolicy{Code: 200},
		incoming: make(chan *Call, 64), closed: make(chan struct{}),
	}
	u.log = cfg.Log.With("ua", cfg.User+"@"+cfg.Domain, "sip", u.addr)
	u.reg = regState{callID: newID(), tag: newID()}
	u.goes(u.readLoop)
	return u, nil
}

// Addr is the UA's local SIP address (what Via and Contact name).
func (u *UA) Addr() netip.AddrPort { return u.addr }

// SetAnswer sets how the UA answers incoming INVITEs from now on.
func (u *UA) SetAnswer(p AnswerPolicy) {
	if p.Code == 0 {
		p.Code = 200
	}
	u.mu.Lock()
	u.answer = p
	u.mu.Unlock()
}

func (u *UA) answerPolicy() AnswerPolicy {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.answer
}

// Incoming returns the next incoming call (an initial INVITE), once the UA
// has sent its first response to it per the AnswerPolicy: 180 when it
// rings (state Ringing; WaitAnswer then waits for the 200 or a CANCEL),
// else the final response (state Confirmed, media ready; or Rejected).
// Up to 64 calls wait here; more are answered but not delivered.
func (u *UA) Incoming(ctx context.Context) (*Call, error) {
	select {
	case c := <-u.incoming:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-u.closed:
		return nil, ErrClosed
	}
}

// KeepAlive sends a double CRLF (RFC 5626 section 4.4.1 style) to Server
// every interval until Close or the next KeepAlive call; interval 0 stops.
// With Faults.NoKeepalive it does nothing.
func (u *UA) KeepAlive(interval time.Duration) {
	if u.cfg.Faults.NoKeepalive {
		u.log.Info("keepalives not sent (fault)")
		return
	}
	stop := make(chan struct{})
	u.mu.Lock()
	if u.keepStop != nil {
		close(u.keepStop)
	}
	u.keepStop = stop
	u.mu.Unlock()
	if interval <= 0 {
		return
	}
	u.goes(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-u.closed:
				return
			case <-tick.C:
				_ = u.conn.send([]byte("\r\n\r\n"), u.cfg.Server)
			}
		}
	})
}

// Close ends every call (no BYE is sent), closes every socket and waits
// for every goroutine of the UA to return.
func (u *UA) Close() error {
	u.mu.Lock()
	if u.isClosed {
		u.mu.Unlock()
		return nil
	}
	u.isClosed = true
	calls := make([]*Call, 0, len(u.calls))
	for _, c := range u.calls {
		calls = append(calls, c)
	}
	u.mu.Unlock()
	close(u.closed)
	err := u.conn.close()
	for _, c := range calls {
		c.end("local")
	}
	u.wg.Wait()
	return err
}

// goes runs f on a goroutine that Close waits for; false once closed.
func (u *UA) goes(f func()) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.isClosed {
		return false
	}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		f()
	}()
	return true
}

func (u *UA) addCall(c *Call) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.isClosed {
		return ErrClosed
	}
	if _, dup := u.calls[c.callID]; dup {
		return errors.New("call-id in use")
	}
	u.calls[c.callID] = c
	return nil
}

func (u *UA) call(callID string) *Call {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[callID]
}

func (u *UA) dropCall(c *Call) {
	u.mu.Lock()
	if u.calls[c.callID] == c {
		delete(u.calls, c.callID)
	}
	u.mu.Unlock()
}

// lru is a small map that forgets its oldest entries.
type lru struct {
	max   int
	m     map[string][]byte
	order []string
}

func newLRU(max int) *lru { return &lru{max: max, m: map[string][]byte{}} }

func (l *lru) get(k string) ([]byte, bool) {
	v, ok := l.m[k]
	return v, ok
}

func (l *lru) put(k string, v []byte) {
	if _, ok := l.m[k]; !ok {
		l.order = append(l.order, k)
		if len(l.order) > l.max {
			delete(l.m, l.order[0])
			l.order = l.order[1:]
		}
	}
	l.m[k] = v
}
