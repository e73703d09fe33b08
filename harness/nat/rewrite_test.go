package nat

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// swap is the rewrite the tests use: 127.0.0.1 ↔ 127.200.0.1 (a view two
// characters longer), 127.0.0.10 left alone.
func swap(a netip.Addr) (netip.Addr, bool) {
	switch a.String() {
	case "127.0.0.1":
		return netip.MustParseAddr("127.200.0.1"), true
	case "127.200.0.1":
		return netip.MustParseAddr("127.0.0.1"), true
	}
	return a, false
}

func TestRewriteSIP(t *testing.T) {
	cases := []struct {
		name, in, want string
		changed        bool
	}{
		{"whole literals only",
			"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5060;received=127.0.0.1\r\nTo: <sip:a@x127.0.0.1>\r\nContent-Length: 0\r\n\r\n",
			"OPTIONS sip:127.200.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5060;received=127.200.0.1\r\nTo: <sip:a@x127.0.0.1>\r\nContent-Length: 0\r\n\r\n",
			true},
		{"content-length follows the body",
			"SIP/2.0 200 OK\r\nContent-Length: 20\r\n\r\nc=IN IP4 127.0.0.1\r\n",
			"SIP/2.0 200 OK\r\nContent-Length: 22\r\n\r\nc=IN IP4 127.200.0.1\r\n",
			true},
		{"compact content-length",
			"INVITE sip:b@h SIP/2.0\r\nl:20\r\n\r\nc=IN IP4 127.0.0.1\r\n",
			"INVITE sip:b@h SIP/2.0\r\nl:22\r\n\r\nc=IN IP4 127.200.0.1\r\n",
			true},
		{"view back to outside",
			"BYE sip:127.200.0.1:5070 SIP/2.0\r\nContent-Length: 22\r\n\r\nc=IN IP4 127.200.0.1\r\n",
			"BYE sip:127.0.0.1:5070 SIP/2.0\r\nContent-Length: 20\r\n\r\nc=IN IP4 127.0.0.1\r\n",
			true},
		{"headers only: content-length kept",
			"SIP/2.0 180 Ringing\r\nContact: <sip:127.0.0.1>\r\nContent-Length: 0\r\n\r\n",
			"SIP/2.0 180 Ringing\r\nContact: <sip:127.200.0.1>\r\nContent-Length: 0\r\n\r\n",
			true},
		{"not SIP", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", false},
		{"nothing to do", "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := rewriteSIP([]byte(tc.in), swap)
			if string(got) != tc.want || changed != tc.changed {
				t.Errorf("got (changed %v)\n%q\nwant (changed %v)\n%q", changed, got, tc.changed, tc.want)
			}
		})
	}
}

func TestLooksSIP(t *testing.T) {
	for in, want := range map[string]bool{
		"INVITE sip:a@b SIP/2.0\r\n":    true,
		"SIP/2.0 200 OK\r\n":            true,
		"foo sip:x SIP/2.0\r\nbody":     true,
		"\r\n\r\n":                      false,
		"INVITE sip:a@b HTTP/1.1\r\n":   false,
		"INVITE  SIP/2.0\r\n":           false,
		"hello":                         false,
		"SIP/2.0 200 OK":                true,
		"RTP\x80\x00 sip:x SIP/2.0\r\n": false,
	} {
		if got := looksSIP([]byte(in)); got != want {
			t.Errorf("looksSIP(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestSIPEndpoints(t *testing.T) {
	msg := "INVITE sip:bob@127.0.0.9 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;received=127.0.0.5;rport=1\r\n" +
		"v: SIP/2.0/TLS 127.0.0.2\r\n" +
		"Record-Route: <sip:127.0.0.3;lr>, <sips:127.0.0.4:5071;lr>\r\n" +
		"m: <sip:bob@127.0.0.6:5080;transport=tcp>\r\n" +
		"From: <sip:127.0.0.7:9>\r\n" +
		"Content-Length: 0\r\n\r\n" +
		"v=0\r\nc=IN IP4 127.0.0.8\r\nm=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=video 5000 RTP/AVP 96\r\nc=IN IP4 127.0.0.11\r\na=rtcp:5009\r\n"
	sig, media := sipEndpoints([]byte(msg))
	wantSig := []string{"127.0.0.1:5070", "127.0.0.2:5061", "127.0.0.3:5060", "127.0.0.4:5071", "127.0.0.6:5080"}
	wantMedia := []string{"127.0.0.8:4000", "127.0.0.8:4001", "127.0.0.11:5000", "127.0.0.11:5001", "127.0.0.11:5009"}
	if got := strs(sig); !slices.Equal(got, wantSig) {
		t.Errorf("signalling endpoints %v, want %v", got, wantSig)
	}
	if got := strs(media); !slices.Equal(got, wantMedia) {
		t.Errorf("media endpoints %v, want %v", got, wantMedia)
	}
}

func strs(aps []netip.AddrPort) []string {
	var out []string
	for _, a := range aps {
		out = append(out, a.String())
	}
	return out
}

// consistent reports whether msg has exactly one Content-Length header
// (digits only) and a body of that length.
func consistent(msg string) bool {
	head, body, ok := strings.Cut(msg, "\r\n\r\n")
	if !ok || strings.Contains(head, "\n\n") {
		return false
	}
	n := 0
	length := -1
	for _, line := range strings.Split(head, "\r\n")[1:] {
		name, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			continue
		}
		name = strings.TrimSpace(name)
		if !strings.EqualFold(name, "content-length") && !strings.EqualFold(name, "l") {
			continue
		}
		n++
		v = strings.TrimSpace(v)
		if v == "" || strings.Trim(v, "0123456789") != "" {
			return false
		}
		length, _ = strconv.Atoi(v)
	}
	return n == 1 && length == len(body)
}

// FuzzRewrite: the rewrite never panics, and a message whose
// Content-Length was right still has it right; the stream framer always
// makes progress at the end of a stream.
func FuzzRewrite(f *testing.F) {
	for _, s := range []string{
		"INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10\r\nContent-Length: 20\r\n\r\nc=IN IP4 127.0.0.1\r\n",
		"SIP/2.0 200 OK\r\nl: 22\r\n\r\nc=IN IP4 127.200.0.1\r\n",
		"SIP/2.0 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n1.1.1.1",
		"SIP/2.0 200 OK\n\nContent-Length: 9\r\n\r\n127.0.0.1",
		"OPTIONS sip:x SIP/2.0\r\nRoute: <sip:127.0.0.1:99999>\r\nv: SIP/2.0/UDP 127.0.0.1:\r\n\r\nm=audio 65535 RTP\r\nc=IN IP4 127.0.0.1\r\na=rtcp:1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		was := consistent(string(in))
		out, _ := rewriteSIP(slices.Clone(in), swap)
		if was && !consistent(string(out)) {
			t.Fatalf("Content-Length broken by the rewrite:\n%q\n→\n%q", in, out)
		}
		_, _ = replaceIPs(slices.Clone(in), swap)
		_, _ = sipEndpoints(in)
		for _, atEOF := range []bool{false, true} {
			n, _ := nextFrame(in, atEOF)
			if n < 0 || n > len(in) || atEOF && len(in) > 0 && n == 0 {
				t.Fatalf("nextFrame(atEOF %v) = %d for %d bytes", atEOF, n, len(in))
			}
		}
	})
}
