package media

import "errors"

var (
	// ErrNoPorts: the port range has no free RTP/RTCP pair.
	ErrNoPorts = errors.New("no free media ports")
	// ErrMediaTimeout ends a session whose media stopped (or never started).
	ErrMediaTimeout = errors.New("media timeout")
	// ErrDeleted ends a session that was deleted by its owner.
	ErrDeleted = errors.New("session deleted")
	// ErrClosed: the relay was closed.
	ErrClosed = errors.New("relay closed")
	// ErrNoSession: no session with that id.
	ErrNoSession = errors.New("no such session")
	// ErrStreams: an answer names streams the offer did not have.
	ErrStreams = errors.New("stream mismatch")
)
