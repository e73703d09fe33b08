package config

import (
	"strings"
	"testing"
	"time"
)

// TestTCPDefaults: TCP hygiene is on without any configuration, with
// Kamailio-like values.
func TestTCPDefaults(t *testing.T) {
	c, err := Parse("", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.SIP
	if s.TCPMessageTimeout.Duration != 10*time.Second || s.TCPIdleTimeout.Duration != 120*time.Second || s.TCPMaxPerSource != 64 {
		t.Errorf("tcp_message_timeout %s, tcp_idle_timeout %s, tcp_max_per_source %d; want 10s, 2m0s, 64",
			s.TCPMessageTimeout, s.TCPIdleTimeout, s.TCPMaxPerSource)
	}
}

func TestTCPErrors(t *testing.T) {
	for _, tt := range []struct{ name, toml, want string }{
		{"message timeout zero", "[sip]\ntcp_message_timeout = \"0s\"\n", "c.toml:2: sip.tcp_message_timeout: must be 100ms..5m"},
		{"message timeout long", "[sip]\ntcp_message_timeout = \"1h\"\n", "c.toml:2: sip.tcp_message_timeout: must be 100ms..5m"},
		{"idle timeout short", "\n[sip]\ntcp_idle_timeout = \"10ms\"\n", "c.toml:3: sip.tcp_idle_timeout: must be 0s (never) or at least 1s"},
		{"idle timeout negative", "[sip]\ntcp_idle_timeout = \"-1s\"\n", "c.toml:2: sip.tcp_idle_timeout:"},
		{"per source negative", "[sip]\ntcp_max_per_source = -1\n", "c.toml:2: sip.tcp_max_per_source: must not be negative (0 = no limit)"},
		{"not a duration", "[sip]\ntcp_idle_timeout = 120\n", "c.toml:2: sip.tcp_idle_timeout:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.toml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestTCPAccepted(t *testing.T) {
	c, err := Parse("c.toml", []byte("[sip]\ntcp_message_timeout = \"500ms\"\ntcp_idle_timeout = \"0s\"\ntcp_max_per_source = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.SIP; s.TCPMessageTimeout.Duration != 500*time.Millisecond || s.TCPIdleTimeout.Duration != 0 || s.TCPMaxPerSource != 0 {
		t.Errorf("sip = %+v", s)
	}
}
