package config

import (
	"strings"
	"testing"
	"time"
)

// TestLimitsDefaults: flood protection is on without any configuration.
func TestLimitsDefaults(t *testing.T) {
	c, err := Parse("", nil)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Limits
	if l.MaxRequests <= 0 || l.Window.Duration <= 0 || l.BanTime.Duration <= 0 || l.MaxSources <= 0 {
		t.Errorf("flood protection off by default: %+v", l)
	}
	if l.MaxPendingInvites <= 0 || l.MaxQueueDelay.Duration != 200*time.Millisecond {
		t.Errorf("overload protection off by default: %+v", l)
	}
	if l.RetryAfter.Duration != 5*time.Second {
		t.Errorf("retry_after = %s, want 5s", l.RetryAfter)
	}
}

func TestLimitsErrors(t *testing.T) {
	for _, tt := range []struct{ name, toml, want string }{
		{"short window", "[limits]\nwindow = \"1ms\"\n", "c.toml:2: limits.window: must be 100ms..1h"},
		{"negative requests", "\n[limits]\nmax_requests = -1\n", "c.toml:3: limits.max_requests: must not be negative"},
		{"short ban", "[limits]\nban_time = \"0s\"\n", "c.toml:2: limits.ban_time: must be at least 1s"},
		{"few sources", "[limits]\nmax_sources = 3\n", "c.toml:2: limits.max_sources: must be at least 64"},
		{"negative calls", "[limits]\nmax_calls = -5\n", "c.toml:2: limits.max_calls: must not be negative"},
		{"negative per source", "[limits]\nmax_calls_per_source = -1\n", "c.toml:2: limits.max_calls_per_source:"},
		{"negative cps", "[limits]\nmax_cps = -1\n", "c.toml:2: limits.max_cps:"},
		{"negative pending", "[limits]\nmax_pending_invites = -1\n", "c.toml:2: limits.max_pending_invites:"},
		{"negative queue delay", "[limits]\nmax_queue_delay = \"-1s\"\n", "c.toml:2: limits.max_queue_delay: must be between 0s (off) and 10s"},
		{"fractional retry", "[limits]\nretry_after = \"1500ms\"\n", "c.toml:2: limits.retry_after: must be whole seconds"},
		{"memory without unit", "[limits]\nmemory = \"512\"\n", "c.toml:2: limits.memory: not a size"},
		{"memory not a size", "[limits]\nmemory = \"lots\"\n", "c.toml:2: limits.memory: not a size"},
		{"negative memory", "[limits]\nmemory = \"-1GiB\"\n", "c.toml:2: limits.memory: not a size"},
		{"memory too small", "[limits]\nmemory = \"16MiB\"\n", "c.toml:2: limits.memory: must be 0 (no limit) or at least 64MiB, got 16MiB"},
		{"unknown key", "[limits]\nmax_bans = 3\n", "c.toml:2: limits.max_bans: unknown key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.toml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLimitsAccepted(t *testing.T) {
	c, err := Parse("c.toml", []byte("[limits]\nwindow = \"1s\"\nmax_requests = 0\nmax_calls = 100\nmax_calls_per_source = 10\nmax_cps = 20\nretry_after = \"2s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Limits; l.MaxRequests != 0 || l.MaxCalls != 100 || l.MaxCallsPerSource != 10 || l.MaxCPS != 20 || l.RetryAfter.Duration != 2*time.Second || l.BanTime.Duration != time.Minute {
		t.Errorf("limits = %+v", l)
	}
}

// TestLimitsMemory: [limits] memory is off by default and takes a size
// with a unit.
func TestLimitsMemory(t *testing.T) {
	c, err := Parse("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.Memory != 0 {
		t.Errorf("memory = %d by default, want 0 (no limit)", c.Limits.Memory)
	}
	for _, tt := range []struct {
		in   string
		want Size
	}{{"0", 0}, {"512MiB", 512 << 20}, {"2GiB", 2 << 30}, {"800MB", 800e6}, {"65536KiB", 64 << 20}, {"1 GiB", 1 << 30}} {
		c, err := Parse("c.toml", []byte("[limits]\nmemory = \""+tt.in+"\"\n"))
		if err != nil {
			t.Errorf("memory = %q: %v", tt.in, err)
			continue
		}
		if c.Limits.Memory != tt.want {
			t.Errorf("memory = %q: %d bytes, want %d", tt.in, c.Limits.Memory, tt.want)
		}
		b, _ := c.Limits.Memory.MarshalText()
		var back Size
		if err := back.UnmarshalText(b); err != nil || back != tt.want {
			t.Errorf("memory = %q written as %q, read back as %d (%v)", tt.in, b, back, err)
		}
	}
}
