package config

import (
	"errors"
	"strings"
	"testing"
)

// There is no TLS transport yet: a next hop that asks for it (sips: or
// transport=tls) is a config error at load, not a request silently sent
// over UDP.
func TestTLSNextHopRejected(t *testing.T) {
	const msg = "sips/TLS needs a tls listener, not supported yet"
	tests := []struct {
		name, toml, want string
	}{
		{"sips route", "[[route]]\nmatch = \"sip:*@carrier.test\"\nto = \"sips:carrier.test\"\n", `c.toml:3: route.0.to: "sips:carrier.test": ` + msg},
		{"transport=tls route", "[[route]]\nmatch = \"sip:*@x\"\nto = \"sip:1.2.3.4;transport=tls\"\n\n[[route]]\nmatch = \"sip:*@y\"\nto = \"sip:1.2.3.4:5061;lr;transport=TLS\"\n", `c.toml:7: route.1.to: "sip:1.2.3.4:5061;lr;transport=TLS": ` + msg},
		{"sips default_route", "[sip]\ndefault_route = \"sips:pbx.example.test:5061\"\n", `c.toml:2: sip.default_route: "sips:pbx.example.test:5061": ` + msg},
		{"transport=tls default_route", "[sip]\n\ndefault_route = \"sip:10.0.0.1;transport=tls\"\n", `c.toml:3: sip.default_route: "sip:10.0.0.1;transport=tls": ` + msg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tt.toml))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %v (%T), want config.Errors", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
	// Plain sip: next hops over udp and tcp stay fine.
	if _, err := Parse("c.toml", []byte("[sip]\ndefault_route = \"sip:10.0.0.1;transport=tcp\"\n\n[[route]]\nmatch = \"sip:*@x\"\nto = \"sip:1.2.3.4;transport=udp\"\n")); err != nil {
		t.Errorf("sip next hops rejected: %v", err)
	}
}
