package sip

import "errors"

var (
	// ErrNoDialog: no tracked dialog has that Call-ID.
	ErrNoDialog = errors.New("no such dialog")

	errNoListener   = errors.New("no listener for that transport and address family")
	errNoConnection = errors.New("no connection to that TCP client")
	errBadAlias     = errors.New("malformed alias parameter")
	errBadPort      = errors.New("port out of range")
	errRelay        = errors.New("media relay")
	errCancelled    = errors.New("cancelled by the caller")
)
