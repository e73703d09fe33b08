package ng

import (
	"strings"
	"testing"
)

// TestServerRefusesBridgeFlags: in-iface/out-iface ask for bridge mode,
// which sipanchor's relay (one media interface) cannot do; the offer is
// refused rather than relayed on the wrong interface.
func TestServerRefusesBridgeFlags(t *testing.T) {
	_, b, c := newServer(t)
	for _, fl := range []string{"in-iface=internal", "out-iface=external"} {
		rep := ask(t, c, map[string]any{"command": "offer", "call-id": "bridge-" + fl, "from-tag": "f",
			"sdp": sdp("127.0.0.2", 4000), "flags": []any{fl}})
		reason, _ := rep["error-reason"].(string)
		if rep["result"] != "error" || !strings.Contains(reason, "bridge mode is not supported") {
			t.Errorf("offer with %s: %v", fl, rep)
		}
	}
	if n := b.Sessions(); n != 0 {
		t.Errorf("%d relay sessions left by refused offers", n)
	}
}
