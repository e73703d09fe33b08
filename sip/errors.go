package sip

import "errors"

var (
	errNoListener   = errors.New("no listener for that transport and address family")
	errNoConnection = errors.New("no connection to that TCP client")
	errBadAlias     = errors.New("malformed alias parameter")
	errRelay        = errors.New("media relay")
)
