package sip

import (
	"errors"
	"testing"
)

// A route toward TLS is refused rather than sent over UDP.
func TestParseRouteRefusesTLS(t *testing.T) {
	for _, to := range []string{"sips:carrier.test", "sip:1.2.3.4;transport=tls", "sip:1.2.3.4:5061;lr;transport=TLS"} {
		if _, err := parseRoute("*", to); !errors.Is(err, errNoTLS) {
			t.Errorf("%s: err %v, want errNoTLS", to, err)
		}
	}
	for _, to := range []string{"sip:carrier.test", "sip:1.2.3.4;transport=tcp", "sip:1.2.3.4:5080;transport=udp"} {
		if _, err := parseRoute("*", to); err != nil {
			t.Errorf("%s: %v", to, err)
		}
	}
}
