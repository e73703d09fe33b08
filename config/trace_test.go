package config

import (
	"strings"
	"testing"
)

// TestTraceDefaults: the per-call SIP trace is on by default with the
// bounds the console and the harness read from.
func TestTraceDefaults(t *testing.T) {
	c, err := Parse("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Trace.Calls != 1000 || c.Trace.Messages != 64 {
		t.Errorf("trace = %+v, want calls 1000, messages 64", c.Trace)
	}
}

func TestTraceErrors(t *testing.T) {
	for _, tt := range []struct{ name, toml, want string }{
		{"negative calls", "[trace]\ncalls = -1\n", "c.toml:2: trace.calls: must be 0 (no capture) to 1000000, got -1"},
		{"too many calls", "[trace]\ncalls = 2000000\n", "c.toml:2: trace.calls: must be 0 (no capture) to 1000000"},
		{"no messages", "\n[trace]\nmessages = 0\n", "c.toml:3: trace.messages: must be 1 to 10000, got 0"},
		{"too many messages", "[trace]\nmessages = 10001\n", "c.toml:2: trace.messages: must be 1 to 10000"},
		{"unknown key", "[trace]\nbytes = 3\n", "c.toml:2: trace.bytes: unknown key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.toml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestTraceOff(t *testing.T) {
	c, err := Parse("c.toml", []byte("[trace]\ncalls = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Trace.Calls != 0 || c.Trace.Messages != 64 {
		t.Errorf("trace = %+v, want calls 0 (off), messages left at 64", c.Trace)
	}
}
