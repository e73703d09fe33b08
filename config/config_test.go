package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	c, err := Parse("", nil)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if len(c.Listeners) != 2 || c.Listeners[0].String() != "udp:0.0.0.0:5060" || c.Listeners[1].String() != "tcp:0.0.0.0:5060" {
		t.Errorf("listeners = %v, want udp and tcp on 0.0.0.0:5060", c.Listeners)
	}
	if len(c.SIP.Domains) != 0 {
		t.Errorf("domains = %v, want empty (any)", c.SIP.Domains)
	}
	if c.Media.PortMin != 30000 || c.Media.PortMax != 39999 {
		t.Errorf("media ports = %d..%d", c.Media.PortMin, c.Media.PortMax)
	}
	if c.Media.TimeoutMode != "all" {
		t.Errorf("media.timeout_mode = %q, want \"all\" (today's rule: the call ends when every side is silent)", c.Media.TimeoutMode)
	}
	if c.Media.Latch != "strict" {
		t.Errorf("media.latch = %q, want \"strict\" (no RTP Bleed by default)", c.Media.Latch)
	}
	if s := c.SIP; s.TCPMessageTimeout.Duration != 10*time.Second || s.TCPIdleTimeout.Duration != 120*time.Second || s.TCPMaxPerSource != 64 {
		t.Errorf("tcp_message_timeout %s, tcp_idle_timeout %s, tcp_max_per_source %d; want 10s, 2m0s, 64 (Kamailio-like)",
			s.TCPMessageTimeout, s.TCPIdleTimeout, s.TCPMaxPerSource)
	}
	if c.Store.Path != "sipanchor.db" || c.API.Listen != "127.0.0.1:8080" {
		t.Errorf("store/api = %q %q", c.Store.Path, c.API.Listen)
	}
	// The printed defaults must themselves load as a config file.
	if _, err := Parse("defaults.toml", Defaults()); err != nil {
		t.Errorf("defaults as a file: %v", err)
	}
}

func TestIssueExampleAccepted(t *testing.T) {
	c, err := Load("../testdata/config/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.NAT.KeepaliveInterval.Duration != 30*time.Second {
		t.Errorf("keepalive = %v", c.NAT.KeepaliveInterval)
	}
	if len(c.Routes) != 1 || c.Routes[0].To != "sip:127.0.0.1:5080;transport=udp" {
		t.Errorf("routes = %+v", c.Routes)
	}
	if len(c.SIP.Domains) != 1 || c.SIP.Domains[0] != "example.test" {
		t.Errorf("domains = %v", c.SIP.Domains)
	}
	// Keys the file leaves out keep their defaults.
	if c.Registrar.DefaultExpires != 3600 || c.Log.Level != "info" {
		t.Errorf("defaults lost: %+v %+v", c.Registrar, c.Log)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want string // substring of the error, starting with FILE:LINE:
	}{
		{"syntax", "[sip]\nlisten = [\"udp:1.2.3.4:5060\"\nfoo", "c.toml:3:"},
		{"unknown key", "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nlisen = 1\n", "c.toml:3: sip.lisen: unknown key"},
		{"unknown table", "[sipp]\nx = 1\n", "c.toml:2: sipp.x: unknown key"},
		{"unknown key in route", "[[route]]\nmatch = \"sip:*@a\"\nto = \"sip:1.2.3.4\"\n\n[[route]]\nmatch = \"sip:*@b\"\nbogus = 2\n", "c.toml:7: route.bogus: unknown key"},
		{"wrong type int", "[media]\nport_min = \"ten\"\n", "c.toml:2: media.port_min:"},
		{"wrong type list", "[sip]\nlisten = \"udp:127.0.0.1:5060\"\n", "c.toml:2: sip.listen:"},
		{"bad duration", "[nat]\nkeepalive_interval = \"soon\"\n", "c.toml:2: nat.keepalive_interval: not a duration"},
		{"unparsable listen address", "[sip]\nlisten = [\"udp:300.1.1.1:5060\"]\n", "c.toml:2: sip.listen: \"udp:300.1.1.1:5060\": \"300.1.1.1:5060\" is not an IP address"},
		{"unknown transport", "[sip]\nlisten = [\"sctp:127.0.0.1:5060\"]\n", "c.toml:2: sip.listen: \"sctp:127.0.0.1:5060\": unknown transport \"sctp\""},
		{"route transport", "[[route]]\nmatch = \"sip:*@x\"\nto = \"sip:1.2.3.4;transport=carrier-pigeon\"\n", "c.toml:3: route.0.to:"},
		{"route not a uri", "\n[[route]]\nmatch = \"sip:*@x\"\nto = \"10.0.0.1\"\n", "c.toml:4: route.0.to: \"10.0.0.1\": not a SIP URI"},
		{"unparsable api address", "[api]\nlisten = \"localhost\"\n", "c.toml:2: api.listen:"},
		{"unparsable advertise", "[sip]\nadvertise = \"bad host!\"\n", "c.toml:2: sip.advertise:"},
		{"inverted port range", "[media]\nport_min = 40000\nport_max = 30000\n", "c.toml:3: media.port_max: range 40000..30000 is inverted"},
		{"empty port range", "[media]\nport_min = 30000\nport_max = 30000\n", "c.toml:3: media.port_max: range 30000..30000 is empty"},
		{"odd port_min", "[media]\nport_min = 30001\n", "c.toml:2: media.port_min: must be even"},
		{"expires inverted", "[registrar]\nmin_expires = 600\nmax_expires = 60\n", "c.toml:3: registrar.max_expires:"},
		{"bad registrar allow_networks", "[registrar]\nauth = false\nallow_networks = [\"10.0.0.0/8\", \"phones\"]\n", "c.toml:3: registrar.allow_networks: \"phones\" is not a network"},
		{"zero max_contacts", "[registrar]\nmax_contacts = 0\n", "c.toml:2: registrar.max_contacts: must be at least 1, got 0"},
		{"public api without token", "[api]\nlisten = \"0.0.0.0:8080\"\n", "c.toml:2: api.listen:"},
		{"no listeners", "[sip]\nlisten = []\n", "c.toml:2: sip.listen: at least one"},
		{"bad log level", "[log]\nlevel = \"loud\"\n", "c.toml:2: log.level:"},
		{"public ng without allow", "[ng]\nlisten = \"0.0.0.0:2223\"\n", "c.toml:2: ng.listen: \"0.0.0.0:2223\" is not loopback"},
		{"bad ng listen", "[ng]\nlisten = \"localhost\"\n", "c.toml:2: ng.listen:"},
		{"bad ng allow", "[ng]\nallow = [\"10.0.0.0/33\"]\n", "c.toml:2: ng.allow:"},
		{"bad store sync", "[store]\nsync = \"always\"\n", "c.toml:2: store.sync: \"always\": want normal or full"},
		{"bad timeout mode", "[media]\nport_min = 30000\ntimeout_mode = \"either\"\n", "c.toml:3: media.timeout_mode: \"either\": want all or any"},
		{"bad latch", "[media]\nport_min = 30000\nlatch = \"symmetric\"\n", "c.toml:3: media.latch: \"symmetric\": want strict, learn or off"},
		{"tcp message timeout zero", "[sip]\ntcp_message_timeout = \"0s\"\n", "c.toml:2: sip.tcp_message_timeout: must be 100ms..5m"},
		{"tcp message timeout long", "[sip]\ntcp_message_timeout = \"1h\"\n", "c.toml:2: sip.tcp_message_timeout: must be 100ms..5m"},
		{"tcp idle timeout short", "\n[sip]\ntcp_idle_timeout = \"10ms\"\n", "c.toml:3: sip.tcp_idle_timeout: must be 0s (never) or at least 1s"},
		{"tcp idle timeout negative", "[sip]\ntcp_idle_timeout = \"-1s\"\n", "c.toml:2: sip.tcp_idle_timeout:"},
		{"tcp idle timeout not a duration", "[sip]\ntcp_idle_timeout = 120\n", "c.toml:2: sip.tcp_idle_timeout:"},
		{"tcp per source negative", "[sip]\ntcp_max_per_source = -1\n", "c.toml:2: sip.tcp_max_per_source: must not be negative (0 = no limit)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.toml))
			if err == nil {
				t.Fatalf("accepted; want error %q", tt.want)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not config.Errors: %v", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestTCPHygieneOff: the idle timeout and the per-source limit can be
// turned off; the message timeout can be short.
func TestTCPHygieneOff(t *testing.T) {
	c, err := Parse("c.toml", []byte("[sip]\ntcp_message_timeout = \"500ms\"\ntcp_idle_timeout = \"0s\"\ntcp_max_per_source = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.SIP; s.TCPMessageTimeout.Duration != 500*time.Millisecond || s.TCPIdleTimeout.Duration != 0 || s.TCPMaxPerSource != 0 {
		t.Errorf("sip = %+v", s)
	}
}

func TestSeveralErrorsReportedInFileOrder(t *testing.T) {
	_, err := Parse("c.toml", []byte("[media]\nport_min = 30001\n\n[log]\nlevel = \"x\"\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "c.toml:2:") || !strings.HasPrefix(lines[1], "c.toml:5:") {
		t.Errorf("errors = %q", lines)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/sipanchor.toml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want not-exist", err)
	}
}

func TestKeyLines(t *testing.T) {
	src := `# comment = not a key
[sip]
listen = [
  "udp:1.2.3.4:5060",  # fake = key
]
advertise = "a#b" # trailing
[[route]]
match = "x"
[[route]]
to = """
fake = 1
"""
match = "y"
[ "log" ]
level = "info"
`
	p := keyLines(src)
	want := map[string]int{"sip": 2, "sip.listen": 3, "sip.advertise": 6, "route.0": 7, "route.0.match": 8,
		"route.1.to": 10, "route.1.match": 13, "route.match": 8, "log.level": 15}
	for k, l := range want {
		if p[k] != l {
			t.Errorf("line of %s = %d, want %d", k, p[k], l)
		}
	}
	if _, ok := p["fake"]; ok {
		t.Error("a key inside a multi-line string or array was recorded")
	}
	if _, ok := p["route.1.fake"]; ok {
		t.Error("a key inside a multi-line string was recorded")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\n"))
	f.Add([]byte("[[route]]\nmatch = \"sip:*@x\"\nto = \"sip:1.2.3.4\"\n"))
	f.Add([]byte("[media]\nport_min = 3\n"))
	f.Add(Defaults())
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := Parse("f.toml", src)
		if err == nil && len(c.Listeners) == 0 {
			t.Fatal("a config without listeners was accepted")
		}
	})
}

func FuzzParseListener(f *testing.F) {
	for _, s := range []string{"udp:127.0.0.1:5060", "tcp:[::1]:5070", "udp:1.2.3.4", "x", "udp:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseListener(s)
		if err == nil && (!l.Addr.IsValid() || l.Addr.Port() == 0) {
			t.Fatalf("ParseListener(%q) = %v without error", s, l)
		}
	})
}

func TestRegistrarAllowNetworksParsed(t *testing.T) {
	c, err := Parse("c.toml", []byte("[registrar]\nallow_networks = [\"192.0.2.0/24\", \"198.51.100.7\", \"2001:db8::/32\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.Registrar.AllowPrefixes {
		got = append(got, p.String())
	}
	want := []string{"192.0.2.0/24", "198.51.100.7/32", "2001:db8::/32"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("AllowPrefixes = %v, want %v", got, want)
	}
	if c.Registrar.MaxContacts != 10 {
		t.Errorf("max_contacts default = %d, want 10", c.Registrar.MaxContacts)
	}
}
