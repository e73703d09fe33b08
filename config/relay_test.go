package config

import (
	"strings"
	"testing"
)

// TestRelayKeysNeedTheirEngine: keys that only the rtpengine engine reads
// are an error with engine = "builtin" (they would silently do nothing),
// and two sets with one id are an error.
func TestRelayKeysNeedTheirEngine(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want string // "" = accepted
	}{
		{"tout with builtin", "[relay]\nrtpengine_tout = \"2s\"\n", `c.toml:2: relay.rtpengine_tout: only applies to engine = "rtpengine"`},
		{"retr with builtin", "[relay]\nengine = \"builtin\"\nrtpengine_retr = 3\n", `c.toml:3: relay.rtpengine_retr: only applies to engine = "rtpengine"`},
		{"disable_timeout with builtin", "[relay]\ndisable_timeout = \"5s\"\n", `c.toml:2: relay.disable_timeout: only applies`},
		{"timer_interval with builtin", "[relay]\ntimer_interval = \"5s\"\n", `c.toml:2: relay.timer_interval: only applies`},
		{"poll_interval with builtin", "[relay]\npoll_interval = \"2s\"\n", `c.toml:2: relay.poll_interval: only applies`},
		{"set with builtin", "[relay]\nengage = \"always\"\n\n[[relay.set]]\nid = 0\nnodes = [\"udp:127.0.0.1:2223\"]\n", `c.toml:4: relay.set: only applies to engine = "rtpengine"`},
		{"duplicate set id", "[relay]\nengine = \"rtpengine\"\n\n[[relay.set]]\nid = 1\nnodes = [\"udp:127.0.0.1:2223\"]\n\n[[relay.set]]\nid = 1\nnodes = [\"udp:127.0.0.1:2224\"]\n", `c.toml:9: relay.set.1.id: set 1 is defined twice`},
		{"rtpengine keys with rtpengine", "[relay]\nengine = \"rtpengine\"\nrtpengine_tout = \"2s\"\npoll_interval = \"1s\"\n\n[[relay.set]]\nid = 0\nnodes = [\"udp:127.0.0.1:2223\"]\n", ""},
		{"builtin alone", "[relay]\nengine = \"builtin\"\nengage = \"nat\"\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.toml))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want == "":
			case err == nil:
				t.Fatalf("accepted; want error %q", tt.want)
			case !strings.Contains(err.Error(), tt.want):
				t.Errorf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}
