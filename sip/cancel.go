package sip

import (
	"sync"

	"github.com/emiago/sipgo/sip"
)

// cancelWatch follows the caller's CANCEL of one INVITE from the moment
// its server transaction exists, so that a CANCEL arriving while the
// INVITE is still being authenticated, routed or offered to the relay is
// not lost. sipgo answers the CANCEL and sends the 487 itself right after
// calling our hook, on its own goroutine: the hook runs first, so
// whatever it tears down (the relay sessions) is gone before the caller
// holds its final response.
type cancelWatch struct {
	mu    sync.Mutex
	fired bool
	hook  func()
	ch    chan struct{} // closed once cancelled
}

// watchCancel registers for the CANCEL of an INVITE's transaction. For
// other requests it returns a watch that never fires.
func watchCancel(req *sip.Request, tx sip.ServerTransaction) *cancelWatch {
	w := &cancelWatch{ch: make(chan struct{})}
	st, ok := tx.(*sip.ServerTx)
	if !ok || !req.IsInvite() {
		return w
	}
	if !st.OnCancel(func(*sip.Request) { w.fire() }) {
		w.fire() // cancelled (or ended) before we could register
	}
	return w
}

func (w *cancelWatch) fire() {
	w.mu.Lock()
	if w.fired {
		w.mu.Unlock()
		return
	}
	w.fired = true
	hook := w.hook
	w.mu.Unlock()
	if hook != nil {
		hook()
	}
	close(w.ch)
}

// onCancel sets what to undo synchronously when the CANCEL comes; if it
// came already, fn runs now.
func (w *cancelWatch) onCancel(fn func()) {
	w.mu.Lock()
	if !w.fired {
		w.hook = fn
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	fn()
}

// cancelled reports whether the CANCEL came.
func (w *cancelWatch) cancelled() bool {
	select {
	case <-w.ch:
		return true
	default:
		return false
	}
}

// done is closed when the CANCEL comes.
func (w *cancelWatch) done() <-chan struct{} { return w.ch }
