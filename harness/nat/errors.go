package nat

import "errors"

var (
	// ErrConfig: the Config cannot make a box; the wrapped text names the field.
	ErrConfig = errors.New("nat config")
	// ErrClosed: the box was closed.
	ErrClosed = errors.New("nat box closed")
	// ErrNotOutside: the address is an inside host's, a view, or not IPv4,
	// so the box cannot show it to its inside hosts.
	ErrNotOutside = errors.New("not an outside address")
	// ErrViewFull: the View prefix has no view address left.
	ErrViewFull = errors.New("view prefix exhausted")
)
