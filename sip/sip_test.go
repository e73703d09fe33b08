package sip

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"sipanchor/config"

	"github.com/emiago/sipgo/sip"
)

func TestParseDigest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
		err  bool
	}{
		{"typical", `Digest username="bob", realm="example.test", nonce="a.b", uri="sip:example.test", response="0f", qop=auth, nc=00000001, cnonce="x"`,
			map[string]string{"username": "bob", "realm": "example.test", "nonce": "a.b", "uri": "sip:example.test", "response": "0f", "qop": "auth", "nc": "00000001", "cnonce": "x"}, false},
		{"escaped quote and comma", `Digest username="b\"o,b"`, map[string]string{"username": `b"o,b`}, false},
		{"case-insensitive scheme and keys", `digest USERNAME=bob`, map[string]string{"username": "bob"}, false},
		{"not digest", `Basic Ym9iOnB3`, nil, true},
		{"unterminated", `Digest username="bob`, nil, true},
		{"no equals", `Digest username`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDigest(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add(`Digest username="bob", realm="r", nonce="n", qop=auth`)
	f.Add(`Digest a="\"`)
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseDigest(s) // must not panic or loop
	})
}

func TestAliasTarget(t *testing.T) {
	tests := []struct {
		name   string
		uri    string
		ok     bool
		bad    bool
		dst    string
		tr     string
		hasAli bool
	}{
		{"udp", "sip:bob@192.168.1.50:5060;alias=127.0.0.3~40000~udp", true, false, "127.0.0.3:40000", "udp", false},
		{"tcp", "sip:bob@10.0.0.1;transport=tcp;alias=127.0.0.4~5555~tcp", true, false, "127.0.0.4:5555", "tcp", false},
		{"ipv6", "sip:bob@[fd00::1];alias=::1~7000~udp", true, false, "[::1]:7000", "udp", false},
		{"none", "sip:bob@192.168.1.50", false, false, "", "", false},
		{"bad port", "sip:bob@h;alias=127.0.0.1~99999~udp", true, true, "", "", false},
		{"bad transport", "sip:bob@h;alias=127.0.0.1~5060~sctp", true, true, "", "", false},
		{"short", "sip:bob@h;alias=127.0.0.1", true, true, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var u sip.Uri
			if err := sip.ParseUri(tt.uri, &u); err != nil {
				t.Fatal(err)
			}
			tg, ok, err := aliasTarget(u)
			if ok != tt.ok || (err != nil) != tt.bad {
				t.Fatalf("ok=%v err=%v, want ok=%v bad=%v", ok, err, tt.ok, tt.bad)
			}
			if !ok || tt.bad {
				return
			}
			if tg.dst.String() != tt.dst || tg.transport != tt.tr {
				t.Errorf("target %s %s, want %s %s", tg.transport, tg.dst, tt.tr, tt.dst)
			}
			if tg.ruri.UriParams.Has(aliasParam) {
				t.Errorf("alias left in Request-URI %s", tg.ruri.String())
			}
			if u.Host != tg.ruri.Host {
				t.Errorf("host changed: %s", tg.ruri.String())
			}
		})
	}
}

func FuzzAliasTarget(f *testing.F) {
	f.Add("127.0.0.3~40000~udp")
	f.Add("~~")
	f.Fuzz(func(t *testing.T, alias string) {
		u := sip.Uri{Scheme: "sip", Host: "h", UriParams: sip.NewParams()}
		u.UriParams.Add(aliasParam, alias)
		tg, ok, err := aliasTarget(u)
		if !ok {
			t.Fatal("alias present but not seen")
		}
		if err == nil && (!tg.dst.IsValid() || tg.dst.Port() == 0) {
			t.Fatalf("alias %q accepted with target %v", alias, tg.dst)
		}
	})
}

func TestAddAlias(t *testing.T) {
	tests := []struct {
		name, contact, src, tr, want string
	}{
		{"private contact", "<sip:a@192.168.1.5:5060>", "127.0.0.2:4000", "udp", "127.0.0.2~4000~udp"},
		{"reachable as written", "<sip:a@127.0.0.2:4000>", "127.0.0.2:4000", "udp", ""},
		{"default port", "<sip:a@127.0.0.2>", "127.0.0.2:5060", "udp", ""},
		{"tcp always", "<sip:a@127.0.0.2:4000;transport=tcp>", "127.0.0.2:4000", "tcp", "127.0.0.2~4000~tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", Host: "x"})
			req.AppendHeader(sip.NewHeader("Contact", tt.contact))
			m, err := sip.ParseMessage([]byte(req.String()))
			if err != nil {
				t.Fatal(err)
			}
			r := m.(*sip.Request)
			addAlias(r, tt.src, tt.tr)
			got, _ := r.Contact().Address.UriParams.Get(aliasParam)
			if got != tt.want {
				t.Errorf("alias %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBetterResponse(t *testing.T) {
	res := func(code int) *sip.Response { return sip.NewResponse(code, "") }
	tests := []struct {
		codes []int
		want  int
	}{
		{[]int{486, 404}, 486},
		{[]int{500, 486}, 486},
		{[]int{486, 603, 302}, 603},
		{[]int{408, 302}, 302},
		{[]int{480}, 480},
	}
	for _, tt := range tests {
		var best *sip.Response
		for _, c := range tt.codes {
			best = better(best, res(c))
		}
		if best.StatusCode != tt.want {
			t.Errorf("%v → %d, want %d", tt.codes, best.StatusCode, tt.want)
		}
	}
}

func TestBehindNAT(t *testing.T) {
	src := regSource{addr: netip.MustParseAddrPort("127.0.0.2:5062"), transport: "udp"}
	tests := []struct {
		contact string
		want    bool
	}{
		{"sip:a@127.0.0.2:5062", false},
		{"sip:a@192.168.1.50:5062", true},
		{"sip:a@127.0.0.2", true}, // 5060 ≠ 5062
		{"sip:a@host.example", true},
	}
	for _, tt := range tests {
		if got := behindNAT(tt.contact, src); got != tt.want {
			t.Errorf("behindNAT(%s) = %v, want %v", tt.contact, got, tt.want)
		}
	}
	if !behindNAT("sip:a@127.0.0.2:5062", regSource{addr: src.addr, transport: "tcp"}) {
		t.Error("a TCP client is always reached over its connection")
	}
}

func TestRouteMatch(t *testing.T) {
	p := &Proxy{}
	for _, r := range [][2]string{{"sip:*@carrier.test", "sip:127.0.0.1:5080"}, {"sip:+1*@*", "sip:127.0.0.1:5090"}} {
		sr, err := parseRoute(r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		p.routes = append(p.routes, sr)
	}
	tests := []struct {
		uri  string
		port int // 0: no match
	}{
		{"sip:alice@carrier.test", 5080},
		{"sip:alice@CARRIER.test:5060;user=phone", 5080},
		{"sip:+15551234@pstn.test", 5090},
		{"sip:alice@other.test", 0},
	}
	for _, tt := range tests {
		var u sip.Uri
		if err := sip.ParseUri(tt.uri, &u); err != nil {
			t.Fatal(err)
		}
		sr, ok := p.matchRoute(u)
		if got := 0; ok {
			got = sr.to.Port
			if got != tt.port {
				t.Errorf("%s → port %d, want %d", tt.uri, got, tt.port)
			}
		} else if tt.port != 0 {
			t.Errorf("%s: no route, want port %d", tt.uri, tt.port)
		}
	}
}

func TestCheckRequest(t *testing.T) {
	base := "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
	tests := []struct {
		name, msg, want string
	}{
		{"ok", base + "Content-Length: 0\r\n\r\n", ""},
		{"method mismatch", base[:len(base)-len("CSeq: 1 OPTIONS\r\n")] + "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", "CSeq Method Mismatch"},
		{"no branch", "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n", ""}, // RFC 2543: matched by RFC 3261 §17.2.3, see rfc2543.go
		{"no To", "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n", "Missing To"},
		// sipgo reads any integer as a port; a socket cannot have these.
		{"Request-URI port out of range", strings.Replace(base, "sip:b@x SIP", "sip:b@x:70000 SIP", 1) + "\r\n", "Bad Request-URI"},
		{"Route port out of range", base + "Route: <sip:127.0.0.1;lr>, <sip:127.0.0.8:65536;lr>\r\n\r\n", "Bad Route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := sip.ParseMessage([]byte(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			err = checkRequest(m.(*sip.Request))
			if got := ""; err != nil {
				got = err.Error()
				if got != tt.want {
					t.Errorf("%q, want %q", got, tt.want)
				}
			} else if tt.want != "" {
				t.Errorf("accepted, want %q", tt.want)
			}
		})
	}
}

// FuzzDatagramFilter feeds arbitrary datagrams to the UDP pre-check: it
// must never panic, never return an error (that would stop the read loop),
// and only pass on what parses into a complete request or a response.
func FuzzDatagramFilter(f *testing.F) {
	f.Add([]byte("OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\n\r\n"))
	f.Add([]byte("INVITE sip:x SIP/2.0\r\nContent-Length: 99\r\n\r\nabc"))
	df := &datagramFilter{parser: sip.NewParser(), bad: func(string, net.Addr) {}}
	props := sip.TransportReadProps{Transport: "UDP", LocalAddr: &net.UDPAddr{}, RemoteAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := df.filter(props, data)
		if err != nil {
			t.Fatalf("filter returned %v", err)
		}
		if out == nil {
			return
		}
		m, perr := sip.ParseMessage(out)
		if perr != nil {
			t.Fatalf("passed a datagram that does not parse: %v", perr)
		}
		if r, ok := m.(*sip.Request); ok {
			restoreMethod(r) // as the proxy does
			if cerr := checkRequest(r); cerr != nil {
				t.Fatalf("passed an incomplete request: %v", cerr)
			}
		}
	})
}

// A wildcard IPv4 listener must stay IPv4 and advertise an IPv4 address
// (Go's "udp" on 0.0.0.0 is a dual-stack [::] socket).
func TestBindWildcardIPv4(t *testing.T) {
	ls, err := bind([]config.Listener{
		{Transport: "udp", Addr: netip.MustParseAddrPort("0.0.0.0:0")},
		{Transport: "tcp", Addr: netip.MustParseAddrPort("0.0.0.0:0")},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range ls {
			l.close()
		}
	}()
	for _, l := range ls {
		if !l.local.Addr().Is4() {
			t.Errorf("%s bound as %s, want IPv4", l.transport, l.local)
		}
		if a, err := netip.ParseAddr(l.host); err != nil || !a.Is4() {
			t.Errorf("%s advertises %q, want an IPv4 address", l.transport, l.host)
		}
	}
}

func TestStrayKind(t *testing.T) {
	tests := []struct {
		msg  string
		want stray
	}{
		{"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKsa1\r\nCSeq: 1 INVITE\r\n\r\n", straySuccess},
		{"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKsa1\r\nCSeq: 1 INVITE\r\n\r\n", strayDropped},
		{"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKsa1\r\nCSeq: 1 INVITE\r\n\r\n", strayFailure},
		{"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKsa1\r\nCSeq: 2 BYE\r\n\r\n", strayDropped},
		{"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKsa1\r\nCSeq: 2 BYE\r\n\r\n", strayDropped},
	}
	for _, tt := range tests {
		m, err := sip.ParseMessage([]byte(tt.msg))
		if err != nil {
			t.Fatal(err)
		}
		if got := strayKind(m.(*sip.Response)); got != tt.want {
			t.Errorf("%q: %v, want %v", strings.SplitN(tt.msg, "\r\n", 2)[0], got, tt.want)
		}
	}
}
