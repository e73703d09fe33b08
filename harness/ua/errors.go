package ua

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by anything called on, or waiting in, a closed UA.
	ErrClosed = errors.New("ua closed")
	// ErrTimeout means a transaction saw no final response within 64*T1
	// (RFC 3261 Timer B/F, 32 s).
	ErrTimeout = errors.New("no final response within 32s")
	// ErrCallEnded is returned by in-dialog operations on a call that has ended.
	ErrCallEnded = errors.New("call ended")
	// ErrNotEstablished is returned by in-dialog operations on a call that is
	// not answered yet.
	ErrNotEstablished = errors.New("call not established")
	// ErrNotCancellable is returned by Cancel when the INVITE already has a
	// final response, or when the call is not an outgoing one.
	ErrNotCancellable = errors.New("call cannot be cancelled")
	// ErrAnsweredFirst is returned by Cancel when a 2xx crossed the CANCEL:
	// the call was answered, and the UA hung it up (RFC 3261 section 9.1).
	ErrAnsweredFirst = errors.New("call answered before the CANCEL took effect; hung up")
	// ErrNoTelephoneEvent is returned by SendDTMF when the remote SDP did
	// not accept telephone-event (RFC 4733).
	ErrNoTelephoneEvent = errors.New("remote SDP has no telephone-event")
	// ErrNoMedia is returned when a call has no RTP yet (an incoming call
	// not answered), or, for DTMF, nowhere to send it now (no remote
	// address, or held).
	ErrNoMedia = errors.New("no remote media address")
	// ErrBadSDP is returned for an SDP the UA cannot use (no audio, no PCMU).
	ErrBadSDP = errors.New("unusable SDP")
)

// StatusError is a final response of 300 or more to a request of the UA.
type StatusError struct {
	Code   int
	Reason string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("sip status %d %s", e.Code, e.Reason)
}
