package ua

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// CallState is where a call is.
type CallState int32

const (
	// StateUnknown is the zero value.
	StateUnknown CallState = iota
	// StateCalling: INVITE sent or received, no provisional response yet.
	StateCalling
	// StateRinging: early, a provisional response sent or received.
	StateRinging
	// StateConfirmed: answered (2xx).
	StateConfirmed
	// StateEnded: was answered, then ended (BYE, or Close).
	StateEnded
	// StateRejected: never answered: a final response of 300 or more
	// (CANCEL's 487 included), or given up.
	StateRejected
)

func (s CallState) String() string {
	switch s {
	case StateCalling:
		return "calling"
	case StateRinging:
		return "ringing"
	case StateConfirmed:
		return "confirmed"
	case StateEnded:
		return "ended"
	case StateRejected:
		return "rejected"
	}
	return "unknown"
}

// Call is one dialog of a UA, placed (Call, Invite) or received (Incoming),
// with its RTP stream.
type Call struct {
	u        *UA
	log      *slog.Logger
	callID   string
	outgoing bool

	mu          sync.Mutex
	state       CallState
	localURI    sip.Uri
	remoteURI   sip.Uri
	localTag    string
	remoteTag   string
	target      sip.Uri      // the peer's Contact
	routes      []sip.Uri    // the route set, as Route headers
	cseq        uint32       // our last CSeq
	remoteCSeq  uint32       // the peer's last CSeq
	invite      *sip.Request // the initial INVITE, ours or theirs
	inviteFinal bool         // a final response to it was sent or received
	abandoned   bool         // outgoing: the caller gave up before a final response
	authTried   bool         // outgoing: the INVITE was sent again with credentials
	cancelling  bool
	media       *media
	sessID      uint64
	sdpVer      uint64
	localSDP    []byte
	remoteSDP   []byte
	ackOffer    bool // our 2xx carried the offer: the ACK carries the answer
	final       error
	endedBy     string
	provisional chan struct{}
	answered    chan struct{}
	cancelled   chan struct{}
	done        chan struct{}
}

func newCall(u *UA, callID string, outgoing bool) *Call {
	return &Call{u: u, log: u.log.With("call_id", callID), callID: callID, outgoing: outgoing,
		state: StateCalling, sessID: uint64(time.Now().UnixNano() & 0xffffffff),
		provisional: make(chan struct{}), answered: make(chan struct{}),
		cancelled: make(chan struct{}), done: make(chan struct{})}
}

// closeCh closes ch unless it is closed; callers hold c.mu.
func closeCh(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// CallID is the call's Call-ID.
func (c *Call) CallID() string { return c.callID }

// State is where the call is now.
func (c *Call) State() CallState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Done is closed when the call has ended (or was rejected).
func (c *Call) Done() <-chan struct{} { return c.done }

// EndedBy says who ended the call: "local" or "remote"; "" while it lasts.
func (c *Call) EndedBy() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endedBy
}

// LocalSDP is the last SDP the UA sent in this call.
func (c *Call) LocalSDP() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.localSDP
}

// RemoteSDP is the last SDP the peer sent in this call.
func (c *Call) RemoteSDP() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remoteSDP
}

func (c *Call) rtp() *media {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.media
}

// LocalMedia is the RTP address the UA's SDP names (its socket, or the
// STUN mapping of it); zero before the call has media.
func (c *Call) LocalMedia() netip.AddrPort {
	if m := c.rtp(); m != nil {
		return m.local()
	}
	return netip.AddrPort{}
}

// RTPSource is the address the call's RTP leaves from: LocalMedia's
// socket, or another one with Faults.AsymmetricRTP.
func (c *Call) RTPSource() netip.AddrPort {
	if m := c.rtp(); m != nil {
		return m.sendAddr()
	}
	return netip.AddrPort{}
}

// RemoteMedia is where the peer's SDP says to send RTP.
func (c *Call) RemoteMedia() netip.AddrPort {
	if m := c.rtp(); m != nil {
		if r := m.remote.Load(); r != nil {
			return r.addr
		}
	}
	return netip.AddrPort{}
}

// StartMedia sends PCMU (payload type 0) every interval to the address of
// the remote SDP, from the socket its own SDP names (unless
// Faults.AsymmetricRTP), while the negotiated direction lets it send; it
// stops when the call ends. Calling it again changes the interval.
func (c *Call) StartMedia(interval time.Duration) error {
	m := c.rtp()
	if m == nil {
		return ErrNoMedia
	}
	m.start(interval)
	return nil
}

// Received is what the call's RTP socket received so far.
func (c *Call) Received() MediaStats {
	if m := c.rtp(); m != nil {
		return m.received()
	}
	return MediaStats{}
}

// Sent is how many RTP packets (audio and events) the call sent.
func (c *Call) Sent() int {
	if m := c.rtp(); m != nil {
		return m.sentPackets()
	}
	return 0
}

// SendDTMF sends digits (0-9, *, #, A-D) as RFC 4733 events with the
// payload type the remote SDP gave telephone-event; it returns when the
// last end packet has gone (about 120 ms a digit).
func (c *Call) SendDTMF(ctx context.Context, digits string) error {
	m := c.rtp()
	if m == nil {
		return ErrNoMedia
	}
	return m.sendDTMF(ctx, digits)
}

// end ends the call once: by "local" or "remote".
func (c *Call) end(by string) {
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return
	default:
	}
	c.endedBy = by
	if !c.inviteFinal && c.final == nil { // e.g. Close while it rang
		c.inviteFinal, c.final = true, ErrCallEnded
	}
	if c.state == StateConfirmed {
		c.state = StateEnded
	} else {
		c.state = StateRejected
	}
	state := c.state
	closeCh(c.provisional)
	closeCh(c.answered)
	close(c.done)
	m := c.media
	c.mu.Unlock()
	if m != nil {
		m.close()
	}
	c.u.dropCall(c)
	c.log.Info("call ended", "by", by, "state", state)
}

// request builds an in-dialog request; seq 0 takes the next CSeq.
func (c *Call) request(method sip.RequestMethod, seq uint32) *sip.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq == 0 {
		c.cseq++
		seq = c.cseq
	}
	req := c.u.request(method, c.target, fromHeader(c.localURI, c.localTag), toHeader(c.remoteURI, c.remoteTag),
		c.callID, seq, c.routes)
	if method == sip.INVITE || method == sip.UPDATE {
		req.AppendHeader(c.u.contact())
	}
	return req
}

// confirmed returns nil for an answered call that has not ended.
func (c *Call) confirmed() error {
	switch c.State() {
	case StateConfirmed:
		return nil
	case StateEnded, StateRejected:
		return ErrCallEnded
	}
	return ErrNotEstablished
}

// Hangup sends BYE and waits for its final response. The call ends (its
// media stops) when the BYE leaves, whatever the answer. Only an answered
// call can be hung up (ErrNotEstablished before): an outgoing one that
// rings is Cancelled.
func (c *Call) Hangup(ctx context.Context) error {
	if err := c.confirmed(); err != nil {
		return err
	}
	req := c.request(sip.BYE, 0)
	c.end("local")
	res, err := c.u.do(ctx, req)
	if err != nil {
		return err
	}
	if res.StatusCode >= 300 {
		return &StatusError{Code: res.StatusCode, Reason: res.Reason}
	}
	return nil
}

// newSDP is the UA's next SDP in this call, naming addr; callers hold c.mu.
func (c *Call) newSDP(addr netip.AddrPort, dir string, dtmfPT int) ([]byte, error) {
	c.sdpVer++
	b, err := localSDP{sessID: c.sessID, version: c.sdpVer, addr: addr, dir: dir, dtmfPT: dtmfPT}.marshal()
	if err == nil {
		c.localSDP = b
	}
	return b, err
}
