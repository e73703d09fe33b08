package sip

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestCleanLWS(t *testing.T) {
	tests := []struct {
		name, in string
		via      bool
		want     string // "" = unchanged
	}{
		{"wsinv To", `sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n`, false, `sip:vivekg@chair-dnrc.example.com;tag=1918181833n`},
		{"wsinv From", `"J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8`, false, `"J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8`},
		{"wsinv Via", `SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw`, true, `SIP/2.0/UDP 192.0.2.2;branch=390skdjuw`},
		{"wsinv Via list", `SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239`, true,
			`SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8,SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239`},
		{"wsinv Contact", `"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33`, false,
			`"Quoted string \"\"" <sip:jdrosen@example.com>;newparam=newvalue;secondparam;q=0.33`},
		{"Via sent-by colon", "SIP/2.0/UDP 192.0.2.2 :\t5060 ;rport", true, `SIP/2.0/UDP 192.0.2.2:5060;rport`},
		{"colon outside Via kept", `Bob <sip:b@x> ; p = a : b`, false, `Bob <sip:b@x>;p=a : b`},
		{"quoted strings kept", `"a  ;  b" <sip:x@y>;p="1 = 2"`, false, ""},
		{"escaped quote", `"a \" ; b" <sip:x@y>`, false, ""},
		{"URI kept (badaspec)", `"Watson, Thomas" < sip:t.watson@example.test >`, false, ""},
		{"clean", `<sip:b@example.test>;tag=1`, false, ""},
		{"unterminated quote", `"open ; x = 1`, false, ""},
		{"folds", "<sip:b@x>\r\n ;\r\n\ttag = \"a\r\n b\"", false, `<sip:b@x>;tag="a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.in
			}
			if got := string(cleanLWS(nil, []byte(tt.in), tt.via)); got != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

func readTorture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "torture", name+".dat"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNormalizeLWS: RFC 4475 §3.1.1.1 (wsinv) parses into what it says
// once normalised; what is left of the message is as it was.
func TestNormalizeLWS(t *testing.T) {
	in := readTorture(t, "wsinv")
	out := normalizeLWS(in)
	m, err := sip.ParseMessage(out)
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	if tag, _ := req.From().Params.Get("tag"); tag != "98asjd8" {
		t.Errorf("From tag %q", tag)
	}
	if tag, _ := req.To().Params.Get("tag"); tag != "1918181833n" {
		t.Errorf("To tag %q", tag)
	}
	var vias []string
	for _, h := range req.GetHeaders("Via") {
		vias = append(vias, h.Value())
	}
	want := []string{"SIP/2.0/UDP 192.0.2.2;branch=390skdjuw", "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8", "SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239"}
	if strings.Join(vias, "|") != strings.Join(want, "|") {
		t.Errorf("Vias %q\nwant %q", vias, want)
	}
	if q, _ := req.Contact().Params.Get("q"); q != "0.33" {
		t.Errorf("Contact q %q", q)
	}
	for _, kept := range []string{"NewFangledHeader:   newfangled value\r\n continued newfangled value\r\n", "cseq: 0009\r\n  INVITE\r\n", "\r\n\r\nv=0\r\n"} {
		if !bytes.Contains(out, []byte(kept)) {
			t.Errorf("%q changed", kept)
		}
	}

	clean := []byte(req.String())
	if got := normalizeLWS(clean); &got[0] != &clean[0] {
		t.Error("a message without LWS to remove was copied")
	}
	bare := []byte("OPTIONS sip:b@x SIP/2.0\r\nTo: <sip:b@x> ;\rtag=1\r\n\r\n")
	if got := normalizeLWS(bare); !bytes.Equal(got, bare) {
		t.Errorf("a header with a bare CR was rewritten: %q", got)
	}
}

// FuzzNormalizeLWS: the start line, the headers' names and order, what
// their values hold but for white space, and the body stay; each Via
// value is a header of its own; a second pass changes nothing.
func FuzzNormalizeLWS(f *testing.F) {
	screenSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		out := normalizeLWS(data)
		if again := normalizeLWS(out); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n%q\n%q", out, again)
		}
		if len(out) == 0 || &out[0] == &data[0] {
			return
		}
		in, got := headerList(data), headerList(out)
		if in != got {
			t.Fatalf("changed more than LWS:\n%s\n%s", in, got)
		}
	})
}

// headerList is msg less its white space, one line per header field and
// one per Via value, start line and body as they are.
func headerList(msg []byte) string {
	var b strings.Builder
	end := 0
	eachHeader(msg, func(h headerSpan) bool {
		if end == 0 {
			b.Write(msg[:h.start])
		}
		end = h.end
		if h.colon < 0 {
			b.Write(withoutWS(msg[h.start:h.end]))
			b.WriteByte('\n')
			return true
		}
		name := string(withoutWS(h.name(msg)))
		values := [][]byte{withoutWS(msg[h.colon+1 : h.end])}
		if via, ok := lwsKind(h.name(msg)); via && ok {
			values = splitVias(values[0], true)
		}
		for _, v := range values {
			b.WriteString(name + ":" + string(v) + "\n")
		}
		return true
	})
	b.Write(msg[end:])
	return b.String()
}

func withoutWS(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			out = append(out, c)
		}
	}
	return out
}
