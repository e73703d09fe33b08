package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path"
	"slices"
	"testing"
	"time"

	"sipanchor/dialog"

	"github.com/emiago/sipgo/sip"
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

// routeFuzzProxy is a proxy with what routing reads: its own address, a
// served domain with one registered user, two static routes (the first
// with glob), an optional default route, and a resolver that never leaves
// the machine (names not in /etc/hosts fail at once).
func routeFuzzProxy(t *testing.T, glob string, withDefault bool) *Proxy {
	t.Helper()
	p := &Proxy{log: slog.New(slog.DiscardHandler), self: map[string]bool{"127.0.0.1:5060": true},
		domains: map[string]bool{"example.test": true}, dns: offlineResolver()}
	p.loc = &Location{byAOR: map[string][]*Binding{"alice@example.test": {{AOR: "alice@example.test",
		Contact: "sip:alice@192.168.1.50:5062", Expires: time.Now().Add(time.Hour), Q: 1,
		Received: netip.MustParseAddrPort("127.0.0.3:40000"), Transport: "udp", NAT: true}}}}
	for _, r := range [][2]string{{glob, "sip:127.0.0.1:5080"}, {"sip:*@carrier.test", "sip:127.0.0.1:5090;transport=tcp"}} {
		sr, err := parseRoute(r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		p.routes = append(p.routes, sr)
	}
	if withDefault {
		sr, err := parseRoute("*", "sip:127.0.0.1:5070")
		if err != nil {
			t.Fatal(err)
		}
		p.defRoute = &sr
	}
	return p
}

func offlineResolver() *resolver {
	r := newResolver("")
	r.r = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test")
	}}
	return r
}

// FuzzRoute sends a request (Request-URI, To, an optional Route) through
// what the proxy does before forwarding it: the checks, Route consumption
// and targets(), with a fuzzed [[route]] glob. Properties: the route
// matched is the first whose glob matches the Request-URI's key (so never
// one whose glob does not), the decision is the same when asked twice,
// it is either targets or a 4xx/5xx, and every target is a real address
// whose port is one the request or the config named (5060 when none).
func FuzzRoute(f *testing.F) {
	for _, s := range [][4]string{
		{"sip:alice@carrier.test", "<sip:alice@carrier.test>", "", "sip:*@carrier.test"},
		{"sip:alice@CARRIER.test:5060;user=phone", "<sip:alice@carrier.test>", "", "sip:alice@*"},
		{"sip:+15551234@pstn.test", "<sip:+15551234@pstn.test>", "", "sip:+1*@*"},
		{"sip:alice@example.test", "<sip:alice@example.test>", "", "sip:*@example.test"},
		{"sip:bob@127.0.0.1", "\"Bob\" <sip:bob@127.0.0.1>", "", "sip:bob@127.0.0.?"},
		{"sip:bob@192.168.1.50:5062;alias=127.0.0.3~40000~udp", "<sip:bob@example.test>;tag=t1", "", "*"},
		{"sip:bob@127.0.0.9:5064", "<sip:bob@example.test>;tag=t1", "<sip:127.0.0.1:5060;lr>, <sip:127.0.0.8:5066;lr;transport=tcp>", "[a-z]*"},
		{"sip:127.0.0.1:5060;lr", "<sip:bob@example.test>;tag=t1", "<sip:bob@127.0.0.7:5068>", "sip:\\*"},
		{"sip:bob@localhost", "<sip:bob@localhost>", "", "sip:*@localhost"},
		{"tel:+15551234", "<tel:+15551234>", "", "tel:*"},
	} {
		f.Add(s[0], s[1], s[2], s[3], false)
		f.Add(s[0], s[1], s[2], s[3], true)
	}
	f.Fuzz(func(t *testing.T, ruri, to, route, glob string, withDefault bool) {
		p := routeFuzzProxy(t, glob, withDefault)
		if req := screened(ruri, to, route); req != nil {
			p.consumeRoutes(req)
			key := matchKey(req.Recipient)
			sr, matched := p.matchRoute(req.Recipient)
			first := slices.IndexFunc(p.routes, func(r staticRoute) bool { ok, _ := path.Match(r.match, key); return ok })
			if matched != (first >= 0) || matched && (sr.match != p.routes[first].match || sr.to.String() != p.routes[first].to.String()) {
				t.Fatalf("key %q: matchRoute gave %q (%v), the first matching glob is #%d", key, sr.match, matched, first)
			}
			checkTargets(t, p, req)
		}
		// A request of our own (a BYE ending a call) is built from the
		// party's stored Contact and routed without the checks.
		bye, err := inDialogRequest(sip.BYE, "fuzz", dialog.Party{URI: "<sip:bob@example.test>", Tag: "t1", Contact: ruri},
			dialog.Party{URI: "<sip:alice@example.test>", Tag: "f"}, 2, nil, nil)
		if err == nil {
			checkTargets(t, p, bye)
		}
	})
}

// screened is the INVITE with these Request-URI, To and Route as it
// reaches routing: parsed and past checkRequest; nil if refused before.
func screened(ruri, to, route string) *sip.Request {
	msg := "INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKf\r\n" +
		"From: <sip:bob@example.test>;tag=f\r\nTo: " + to + "\r\nCall-ID: fuzz\r\nCSeq: 1 INVITE\r\n"
	if route != "" {
		msg += "Route: " + route + "\r\n"
	}
	m, err := sip.ParseMessage([]byte(msg + "Content-Length: 0\r\n\r\n"))
	if err != nil {
		return nil
	}
	req, ok := m.(*sip.Request)
	if !ok || checkRequest(req) != nil {
		return nil
	}
	return req
}

// checkTargets: targets() decides the same twice, gives targets xor a
// 4xx/5xx, and each target's port is one the request or the config named.
func checkTargets(t *testing.T, p *Proxy, req *sip.Request) {
	t.Helper()
	ts, status, reason := p.targets(req)
	ts2, status2, reason2 := p.targets(req)
	if status != status2 || reason != reason2 || fmt.Sprint(ts) != fmt.Sprint(ts2) {
		t.Fatalf("asked twice: %v %d %q, then %v %d %q", ts, status, reason, ts2, status2, reason2)
	}
	if (status == 0) != (len(ts) > 0) || status != 0 && (status < 400 || status > 599) {
		t.Fatalf("status %d %q with %d targets", status, reason, len(ts))
	}
	ports := []int{5060, 5062, 5080, 5090, 5070, 40000, req.Recipient.Port}
	if r := req.Route(); r != nil {
		ports = append(ports, r.Address.Port)
	}
	if at, ok, err := aliasTarget(req.Recipient); ok && err == nil {
		ports = append(ports, int(at.dst.Port()))
	}
	for _, tg := range ts {
		if !tg.dst.IsValid() || tg.dst.Port() == 0 || !slices.Contains(ports, int(tg.dst.Port())) {
			t.Fatalf("%s %s: target %v is not an address the request or the config named (ports %v)", req.Method, req.Recipient.String(), tg, ports)
		}
	}
}
