package dialog

import (
	"fmt"
	"testing"
	"time"
)

// eventually waits, looking every few milliseconds, until cond holds, and
// fails the test with the message if it still does not after timeout.
// (cmd/sipanchor has the same helper for the end-to-end tests.)
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after %v: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
