package relay

import "errors"

// ErrBridge: in-iface/out-iface ask for bridge mode (legs on different
// media interfaces), which sipanchor's relay, with one interface, lacks.
var ErrBridge = errors.New("in-iface/out-iface name media interfaces, and sipanchor has one ([media] bind): bridge mode is not supported yet")

// Supported reports flags that ParseFlags reads but no engine here can
// honour (ErrBridge); callers refuse them instead of ignoring them.
func (f LegFlags) Supported() error {
	if f.InIface != "" || f.OutIface != "" {
		return ErrBridge
	}
	return nil
}
