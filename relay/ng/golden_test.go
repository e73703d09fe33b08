package ng

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"sipanchor/media"
	"sipanchor/relay"
)

// The replies in testdata/ng/rtpengine-10.5 were captured from Debian's
// rtpengine 10.5 (userspace, --table=-1) answering the .request beside
// them. Each must decode, and sipanchor's server, given the same
// requests in the same order, must answer with the keys and value types
// that Kamailio's and OpenSIPS's modules read.
func TestGoldenRtpengineReplies(t *testing.T) {
	dir := "../../testdata/ng/rtpengine-10.5"
	lo := netip.MustParseAddr("127.0.0.1")
	rl, err := media.NewRelay(media.Config{PortMin: 43500, PortMax: 43599, Bind: lo, Advertise: lo})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	s := &Server{engine: relay.NewBuiltin(rl), calls: map[string]*call{}, served: map[string]uint64{}, cache: map[string]cached{}, log: discard()}

	for _, name := range []string{"ping", "offer", "answer", "query", "delete", "unknown-call"} {
		t.Run(name, func(t *testing.T) {
			req, err := os.ReadFile(filepath.Join(dir, name+".request"))
			if err != nil {
				t.Fatal(err)
			}
			golden, err := os.ReadFile(filepath.Join(dir, name+".reply"))
			if err != nil {
				t.Fatal(err)
			}
			gc, want, err := ParseMessage(golden)
			if err != nil {
				t.Fatalf("rtpengine's reply does not decode: %v", err)
			}
			rc, _, _ := ParseMessage(req)
			if gc != rc {
				t.Fatalf("golden cookie %q, request cookie %q", gc, rc)
			}
			out := s.datagram(context.Background(), req, netip.MustParseAddrPort("127.0.0.1:9"))
			oc, got, err := ParseMessage(out)
			if err != nil || oc != rc {
				t.Fatalf("our reply %q: %v", out, err)
			}
			if got["result"] != want["result"] {
				t.Fatalf("result %v, rtpengine said %v", got["result"], want["result"])
			}
			keys := []string{"result", "sdp", "error-reason"}
			if name == "query" || name == "delete" {
				keys = append(keys, "created", "totals", "tags")
			}
			for _, k := range keys {
				if _, ok := want[k]; !ok {
					continue
				}
				if fmt.Sprintf("%T", got[k]) != fmt.Sprintf("%T", want[k]) {
					t.Errorf("key %q: ours %T, rtpengine's %T", k, got[k], want[k])
				}
			}
			if tot, ok := want["totals"].(map[string]any); ok {
				ours, _ := got["totals"].(map[string]any)
				for _, proto := range []string{"RTP", "RTCP"} {
					w, _ := tot[proto].(map[string]any)
					o, _ := ours[proto].(map[string]any)
					for k := range w {
						if slices.Contains([]string{"packets", "bytes", "errors"}, k) && o[k] == nil {
							t.Errorf("totals.%s.%s missing", proto, k)
						}
					}
				}
			}
		})
	}
}
