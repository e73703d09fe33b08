package sip

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// RFC 4475 shapes a proxy must answer with a code other than 400, or 400
// for duplicated single headers (§3.1.2.16 badvers, §3.3.2 unkscm, §3.3.3
// novelsc, §3.3.5 bext01, §3.3.8 multi01, §3.3.9 mcl01).
func TestProxyRules(t *testing.T) {
	head := func(ruri, version, extra string) string {
		return "OPTIONS " + ruri + " " + version + "\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.test>;tag=1\r\nTo: <sip:b@example.test>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n" + extra + "Content-Length: 0\r\n\r\n"
	}
	tests := []struct {
		name, msg, status, header string
	}{
		{"badvers", head("sip:b@example.test", "SIP/7.0", ""), "SIP/2.0 505 ", ""},
		{"unkscm", head("nobodyknowsthisscheme:totallyopaquecontent", "SIP/2.0", ""), "SIP/2.0 416 ", ""},
		{"novelsc", head("soap.beep://192.0.2.103:3002", "SIP/2.0", ""), "SIP/2.0 416 ", ""},
		{"bext01", head("sip:b@example.test", "SIP/2.0", "Proxy-Require: noProxyReq\r\n"), "SIP/2.0 420 ", "Unsupported: noProxyReq"},
		{"multi01", head("sip:b@example.test", "SIP/2.0", "Call-ID: other\r\n"), "SIP/2.0 400 Duplicate Call-ID", ""},
		{"mcl01", strings.Replace(head("sip:b@example.test", "SIP/2.0", "Content-Length: 3\r\n"), "", "", 1), "SIP/2.0 400 ", ""},
		{"tel", head("tel:+15551234", "SIP/2.0", ""), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r := screen(sip.NewParser(), []byte(tt.msg), false)
			if tt.status == "" {
				if r != nil {
					t.Fatalf("refused: %q", r.reason)
				}
				return
			}
			if r == nil || !strings.HasPrefix(string(r.reply), tt.status) {
				t.Fatalf("reply %q, want %q...", replyLine(r), tt.status)
			}
			if tt.header != "" && !strings.Contains(string(r.reply), tt.header+"\r\n") {
				t.Errorf("reply lacks %q:\\n%s", tt.header, r.reply)
			}
		})
	}
}

func replyLine(r *rejection) string {
	if r == nil {
		return "<passed>"
	}
	l, _, _ := strings.Cut(string(r.reply), "\r\n")
	return l
}
