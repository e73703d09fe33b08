package media

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// updateSDPGolden rewrites the expected part of each golden file with what
// RewriteSDP produces now (PORT placeholders are lost); review the diff.
var updateSDPGolden = flag.Bool("update-sdp-golden", false, "rewrite the expected outputs in testdata/sdp")

const sdpGoldenDir = "../testdata/sdp"

// sdpText joins lines into an SDP body with CRLF line endings.
func sdpText(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// goldenCase is one testdata/sdp/<name>.txt file.
type goldenCase struct {
	flags    []string
	input    []string
	expected []string
}

func readGolden(t testing.TB, path string) goldenCase {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	flags, ok := strings.CutPrefix(lines[0], "# flags:")
	if !ok {
		t.Fatalf("%s: first line %q is not \"# flags: ...\"", path, lines[0])
	}
	sep := -1
	for i, l := range lines {
		if l == "-----" {
			sep = i
			break
		}
	}
	if sep < 0 {
		t.Fatalf("%s: no ----- separator line", path)
	}
	return goldenCase{flags: strings.Fields(flags), input: lines[1:sep], expected: lines[sep+1:]}
}

// goldenRewrite turns the flags of a golden file into a Rewrite with the
// fixed test address and ports 30000, 30002, ... (one per m= line).
func goldenRewrite(t testing.TB, name string, gc goldenCase) Rewrite {
	t.Helper()
	rw := Rewrite{Addr: netip.MustParseAddr("203.0.113.1")}
	if strings.Contains(name, "ipv6") {
		rw.Addr = netip.MustParseAddr("2001:db8::1")
	}
	for _, l := range gc.input {
		if strings.HasPrefix(l, "m=") {
			rw.Ports = append(rw.Ports, 30000+2*len(rw.Ports))
		}
	}
	for _, f := range gc.flags {
		switch f {
		case "replace-origin":
			rw.ReplaceOrigin = true
		case "replace-session-connection":
			rw.ReplaceSessionConnection = true
		case "ICE=remove":
			rw.RemoveICE = true
		case "loop-protect":
			rw.LoopProtect = true
		case "rtcp-mux-offer":
			rw.RTCPMux = "offer"
		case "rtcp-mux-reject":
			rw.RTCPMux = "reject"
		default:
			t.Fatalf("%s: unknown flag %q", name, f)
		}
	}
	return rw
}

// goldenLine compiles an expected line: the word PORT matches any decimal
// number, everything else matches literally.
func goldenLine(expected string) *regexp.Regexp {
	return regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(expected), "PORT", `[0-9]+`) + "$")
}

func TestSDPGoldenLine(t *testing.T) {
	tests := []struct {
		expected, got string
		want          bool
	}{
		{"m=audio PORT RTP/AVP 0", "m=audio 30000 RTP/AVP 0", true},
		{"m=audio PORT RTP/AVP 0", "m=audio x RTP/AVP 0", false},
		{"m=audio PORT RTP/AVP 0", "m=audio  RTP/AVP 0", false},
		{"m=audio 30000 RTP/AVP 0", "m=audio 30000 RTP/AVP 0", true},
		{"m=audio 30000 RTP/AVP 0", "m=audio 30002 RTP/AVP 0", false},
		{"a=rtcp:PORT IN IP4 203.0.113.1", "a=rtcp:30001 IN IP4 203.0.113.1", true},
		{"a=rtcp:PORT IN IP4 203.0.113.1", "a=rtcp:30001 IN IP4 203.0.113.12", false},
		{"a=fmtp:101 0-16", "a=fmtp:101 0-16", true},
	}
	for _, tt := range tests {
		t.Run(tt.expected+"/"+tt.got, func(t *testing.T) {
			if got := goldenLine(tt.expected).MatchString(tt.got); got != tt.want {
				t.Errorf("match = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSDPGolden rewrites each testdata/sdp/<case>.txt input and compares the
// output line by line with the expected part. Inputs are fed with CRLF line
// endings, except in cases whose name contains "lf-only".
func TestSDPGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(sdpGoldenDir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no golden files in %s", sdpGoldenDir)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".txt")
		t.Run(name, func(t *testing.T) {
			gc := readGolden(t, path)
			rw := goldenRewrite(t, name, gc)
			eol := "\r\n"
			if strings.Contains(name, "lf-only") {
				eol = "\n"
			}
			in := []byte(strings.Join(gc.input, eol) + eol)

			out, err := RewriteSDP(in, rw)
			if err != nil {
				t.Fatalf("RewriteSDP: %v", err)
			}
			if !bytes.HasSuffix(out, []byte("\r\n")) {
				t.Errorf("output does not end with CRLF: %q", out)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n")
			for i, l := range got {
				if strings.ContainsAny(l, "\r\n") {
					t.Errorf("output line %d %q has a bare CR or LF", i+1, l)
				}
			}

			if *updateSDPGolden {
				text := "# flags: " + strings.Join(gc.flags, " ") + "\n" +
					strings.Join(gc.input, "\n") + "\n-----\n" + strings.Join(got, "\n") + "\n"
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}

			for i := range max(len(got), len(gc.expected)) {
				switch {
				case i >= len(got):
					t.Errorf("line %d: missing, want %q", i+1, gc.expected[i])
				case i >= len(gc.expected):
					t.Errorf("line %d: extra %q", i+1, got[i])
				case !goldenLine(gc.expected[i]).MatchString(got[i]):
					t.Errorf("line %d: got %q, want %q", i+1, got[i], gc.expected[i])
				}
			}
			if t.Failed() {
				t.Logf("full output:\n%s", out)
			}

			// The output is an SDP the relay can parse again, with the
			// relay's ports.
			info, err := ParseSDP(out)
			if err != nil {
				t.Fatalf("ParseSDP(output): %v", err)
			}
			orig, err := ParseSDP(in)
			if err != nil {
				t.Fatalf("ParseSDP(input): %v", err)
			}
			checkRewritten(t, orig, info, rw)
		})
	}
}

// checkRewritten checks the invariants of a rewrite: same streams, relay
// ports on every non-rejected stream, relay or hold address, and unchanged
// directions.
func checkRewritten(t testing.TB, orig, got *SDPInfo, rw Rewrite) {
	t.Helper()
	if len(got.Streams) != len(orig.Streams) {
		t.Fatalf("rewritten SDP has %d streams, input had %d", len(got.Streams), len(orig.Streams))
	}
	want := rw.Addr.Unmap()
	for i, st := range got.Streams {
		o := orig.Streams[i]
		if o.Port == 0 {
			if st.Port != 0 {
				t.Errorf("stream %d: rejected stream got port %d", i, st.Port)
			}
			continue
		}
		if st.Port != rw.Ports[i] {
			t.Errorf("stream %d: port %d, want %d", i, st.Port, rw.Ports[i])
		}
		if st.Addr != want && !st.Addr.IsUnspecified() {
			t.Errorf("stream %d: address %v, want %v or unspecified", i, st.Addr, want)
		}
		if st.Addr.IsUnspecified() != (o.Addr.IsValid() && o.Addr.IsUnspecified()) {
			t.Errorf("stream %d: address %v, input address %v: hold not preserved", i, st.Addr, o.Addr)
		}
		if st.Direction != o.Direction || st.Hold != o.Hold {
			t.Errorf("stream %d: direction %s hold %v, input had %s hold %v", i, st.Direction, st.Hold, o.Direction, o.Hold)
		}
		if st.Media != o.Media || st.Proto != o.Proto || !reflect.DeepEqual(st.Formats, o.Formats) {
			t.Errorf("stream %d: %s %s %v, input had %s %s %v", i, st.Media, st.Proto, st.Formats, o.Media, o.Proto, o.Formats)
		}
	}
	if rw.LoopProtect && !got.NoRTPProxy {
		t.Errorf("LoopProtect: no a=nortpproxy:yes in output")
	}
}

const sdpHead = "v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\n"

func TestParseSDP(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.10")
	tests := []struct {
		name string
		sdp  []byte
		want *SDPInfo
	}{
		{
			name: "defaults",
			sdp:  sdpText("v=0", "o=alice 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0", "m=audio 49170 RTP/AVP 0 8 101", "a=rtpmap:101 telephone-event/8000"),
			want: &SDPInfo{OriginAddr: "192.0.2.10", Streams: []StreamInfo{{
				Index: 0, Media: "audio", Proto: "RTP/AVP", Port: 49170, Addr: v4, RTCPPort: 49171,
				Direction: "sendrecv", Formats: []string{"0", "8", "101"}, ClockRate: 8000, TelephoneEvents: []uint8{101},
			}}},
		},
		{
			name: "directions, rtcp, rtcp-mux, rejected, media c= over session c=",
			sdp: sdpText("v=0", "o=- 1 1 IN IP4 host.example.com", "s=-", "c=IN IP4 192.0.2.10", "t=0 0",
				"a=recvonly",
				"m=audio 4000 RTP/SAVP 111", "a=rtpmap:111 opus/48000/2", "a=sendonly", "a=rtcp:4011",
				"m=video 4002 RTP/AVP 96", "c=IN IP4 192.0.2.99", "a=rtcp-mux", "a=rtcp:4002 IN IP4 192.0.2.99",
				"m=audio 0 RTP/AVP 0", "a=inactive",
				"m=text 4004 RTP/AVP 98", "a=rtpmap:98 t140/1000"),
			want: &SDPInfo{OriginAddr: "host.example.com", Streams: []StreamInfo{
				{Index: 0, Media: "audio", Proto: "RTP/SAVP", Port: 4000, Addr: v4, RTCPPort: 4011,
					Direction: "sendonly", Hold: true, Formats: []string{"111"}, ClockRate: 48000},
				{Index: 1, Media: "video", Proto: "RTP/AVP", Port: 4002, Addr: netip.MustParseAddr("192.0.2.99"), RTCPPort: 4002,
					RTCPMux: true, Direction: "recvonly", Formats: []string{"96"}, ClockRate: 90000},
				{Index: 2, Media: "audio", Proto: "RTP/AVP", Port: 0, Addr: v4, RTCPPort: 0,
					Direction: "inactive", Hold: true, Formats: []string{"0"}, ClockRate: 8000},
				{Index: 3, Media: "text", Proto: "RTP/AVP", Port: 4004, Addr: v4, RTCPPort: 4005,
					Direction: "recvonly", Formats: []string{"98"}, ClockRate: 1000},
			}},
		},
		{
			name: "zero address hold, no c= at all, nortpproxy at media level",
			sdp: sdpText("v=0", "o=- 1 1 IN IP6 2001:db8::10", "s=-", "t=0 0",
				"m=audio 4000 RTP/AVP 8", "c=IN IP4 0.0.0.0",
				"m=audio 4002 RTP/AVP 9", "c=IN IP6 ::", "a=sendrecv",
				"m=audio 4004 RTP/AVP 10", "a=nortpproxy:yes"),
			want: &SDPInfo{OriginAddr: "2001:db8::10", NoRTPProxy: true, Streams: []StreamInfo{
				{Index: 0, Media: "audio", Proto: "RTP/AVP", Port: 4000, Addr: netip.IPv4Unspecified(), RTCPPort: 4001,
					Direction: "sendrecv", Hold: true, Formats: []string{"8"}, ClockRate: 8000},
				{Index: 1, Media: "audio", Proto: "RTP/AVP", Port: 4002, Addr: netip.IPv6Unspecified(), RTCPPort: 4003,
					Direction: "sendrecv", Hold: true, Formats: []string{"9"}, ClockRate: 8000},
				{Index: 2, Media: "audio", Proto: "RTP/AVP", Port: 4004, RTCPPort: 4005,
					Direction: "sendrecv", Formats: []string{"10"}, ClockRate: 44100},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSDP(tt.sdp)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestParseSDPStream checks single fields of a one-stream SDP made of
// sdpHead, the session lines and the media lines.
func TestParseSDPStream(t *testing.T) {
	tests := []struct {
		name          string
		session       string // after s=, before t=: c=, then after t=: a=
		media         string
		check         func(StreamInfo) any
		want          any
		wantNoRTPProx bool
	}{
		{"direction default", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\n",
			func(s StreamInfo) any { return s.Direction }, "sendrecv", false},
		{"direction session level", "c=IN IP4 192.0.2.1\r\nt=0 0\r\na=sendonly\r\n", "m=audio 1000 RTP/AVP 0\r\n",
			func(s StreamInfo) any { return s.Direction }, "sendonly", false},
		{"direction media over session", "c=IN IP4 192.0.2.1\r\nt=0 0\r\na=sendonly\r\n", "m=audio 1000 RTP/AVP 0\r\na=sendrecv\r\n",
			func(s StreamInfo) any { return s.Direction }, "sendrecv", false},
		{"recvonly is not hold", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\na=recvonly\r\n",
			func(s StreamInfo) any { return s.Hold }, false, false},
		{"sendonly is hold", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\na=sendonly\r\n",
			func(s StreamInfo) any { return s.Hold }, true, false},
		{"inactive is hold", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\na=inactive\r\n",
			func(s StreamInfo) any { return s.Hold }, true, false},
		{"session 0.0.0.0 is hold", "c=IN IP4 0.0.0.0\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\n",
			func(s StreamInfo) any { return s.Hold }, true, false},
		{"media address over session hold", "c=IN IP4 0.0.0.0\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\nc=IN IP4 192.0.2.2\r\n",
			func(s StreamInfo) any { return s.Hold }, false, false},
		{"media addr over session addr", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\nc=IN IP4 192.0.2.2\r\n",
			func(s StreamInfo) any { return s.Addr }, netip.MustParseAddr("192.0.2.2"), false},
		{"multicast ttl ignored", "c=IN IP4 224.2.1.1/127\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\n",
			func(s StreamInfo) any { return s.Addr }, netip.MustParseAddr("224.2.1.1"), false},
		{"rtcp port derived", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\n",
			func(s StreamInfo) any { return s.RTCPPort }, 1001, false},
		{"rtcp port from a=rtcp", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\na=rtcp:2001\r\n",
			func(s StreamInfo) any { return s.RTCPPort }, 2001, false},
		{"rtcp port from a=rtcp with address", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\na=rtcp:2001 IN IP6 2001:db8::2\r\n",
			func(s StreamInfo) any { return s.RTCPPort }, 2001, false},
		{"rtcp port of rejected stream", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 0 RTP/AVP 0\r\n",
			func(s StreamInfo) any { return s.RTCPPort }, 0, false},
		{"rtcp-mux", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\na=rtcp-mux\r\n",
			func(s StreamInfo) any { return s.RTCPMux }, true, false},
		{"no rtcp-mux", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\n",
			func(s StreamInfo) any { return s.RTCPMux }, false, false},
		{"clock rate opus rtpmap", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 111 0\r\na=rtpmap:111 opus/48000/2\r\n",
			func(s StreamInfo) any { return s.ClockRate }, uint32(48000), false},
		{"clock rate static PCMA", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 8 0\r\n",
			func(s StreamInfo) any { return s.ClockRate }, uint32(8000), false},
		{"clock rate static G722 is 8000", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 9\r\n",
			func(s StreamInfo) any { return s.ClockRate }, uint32(8000), false},
		{"clock rate static DVI4/16000", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 6\r\n",
			func(s StreamInfo) any { return s.ClockRate }, uint32(16000), false},
		{"clock rate static H263", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=video 1000 RTP/AVP 34\r\n",
			func(s StreamInfo) any { return s.ClockRate }, uint32(90000), false},
		{"clock rate of the first format only", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0 111\r\na=rtpmap:111 opus/48000/2\r\n",
			func(s StreamInfo) any { return s.ClockRate }, uint32(8000), false},
		{"clock rate dynamic audio default", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 100\r\n",
			func(s StreamInfo) any { return s.ClockRate }, uint32(8000), false},
		{"clock rate dynamic video default", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=video 1000 RTP/AVP 100\r\n",
			func(s StreamInfo) any { return s.ClockRate }, uint32(90000), false},
		{"clock rate bad rtpmap falls back", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 8\r\na=rtpmap:8 PCMA\r\n",
			func(s StreamInfo) any { return s.ClockRate }, uint32(8000), false},
		{"t38 media", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=image 1000 udptl t38\r\n",
			func(s StreamInfo) any { return s.Media + " " + s.Proto + " " + strings.Join(s.Formats, ",") }, "image udptl t38", false},
		{"t38 clock rate", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=image 1000 udptl t38\r\n",
			func(s StreamInfo) any { return s.ClockRate }, uint32(0), false},
		{"webrtc proto", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 UDP/TLS/RTP/SAVPF 111\r\n",
			func(s StreamInfo) any { return s.Proto }, "UDP/TLS/RTP/SAVPF", false},
		{"nortpproxy session level", "c=IN IP4 192.0.2.1\r\nt=0 0\r\na=nortpproxy:yes\r\n", "m=audio 1000 RTP/AVP 0\r\n",
			func(s StreamInfo) any { return s.Port }, 1000, true},
		{"nortpproxy media level", "c=IN IP4 192.0.2.1\r\nt=0 0\r\n", "m=audio 1000 RTP/AVP 0\r\na=nortpproxy:yes\r\n",
			func(s StreamInfo) any { return s.Port }, 1000, true},
		{"nortpproxy no", "c=IN IP4 192.0.2.1\r\nt=0 0\r\na=nortpproxy:no\r\n", "m=audio 1000 RTP/AVP 0\r\n",
			func(s StreamInfo) any { return s.Port }, 1000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ParseSDP([]byte(sdpHead + tt.session + tt.media))
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Streams) != 1 {
				t.Fatalf("%d streams, want 1", len(info.Streams))
			}
			if got := tt.check(info.Streams[0]); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if info.NoRTPProxy != tt.wantNoRTPProx {
				t.Errorf("NoRTPProxy = %v, want %v", info.NoRTPProxy, tt.wantNoRTPProx)
			}
		})
	}
}

func TestSDPErrors(t *testing.T) {
	v4 := netip.MustParseAddr("203.0.113.1")
	good := sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
		"m=audio 1000 RTP/AVP 0", "m=video 0 RTP/AVP 96")
	tests := []struct {
		name string
		sdp  []byte
		rw   *Rewrite // nil: ParseSDP, and RewriteSDP with one port
		want string   // in the error text
	}{
		{"garbage", []byte("hello world\r\n"), nil, "syntax error"},
		{"binary", []byte{0, 1, 2, 0xff}, nil, "bad SDP"},
		{"empty", nil, nil, "empty"},
		{"blank", []byte("\r\n \r\n"), nil, "empty"},
		{"no m= line", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"), nil, "no m= line"},
		{"hostname in session c=", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 pbx.example.com", "t=0 0", "m=audio 1000 RTP/AVP 0"), nil, "hostname"},
		{"hostname in media c=", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=audio 1000 RTP/AVP 0", "c=IN IP4 pbx.example.com"), nil, "hostname"},
		{"not an address in c=", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 1.2.3.4.5:6", "t=0 0", "m=audio 1000 RTP/AVP 0"), nil, "not an IP literal"},
		{"c= without address", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4", "t=0 0", "m=audio 1000 RTP/AVP 0"), nil, "no address"},
		{"port 70000", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 70000 RTP/AVP 0"), nil, "70000"},
		{"bad a=rtcp port", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 1000 RTP/AVP 0", "a=rtcp:x"), nil, "a=rtcp port"},
		{"malformed a=rtcp", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 1000 RTP/AVP 0", "a=rtcp:1001 IN IP4"), nil, "malformed a=rtcp"},
		{"hostname in a=rtcp", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 1000 RTP/AVP 0", "a=rtcp:1001 IN IP4 rtcp.example.com"), nil, "hostname"},
		{"m= line too short", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 1000"), nil, "no <media> <port> <proto>"},
		{"bad media token", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=au\"dio 1000 RTP/AVP 0"), nil, "bad media"},
		{"bad proto token", sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 1000 RTP//AVP 0"), nil, "bad proto"},
		{"stray CR", []byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\rs=-\r\nt=0 0\r\nm=audio 1000 RTP/AVP 0\r\n"), nil, "stray CR"},
		{"ports length mismatch", good, &Rewrite{Addr: v4, Ports: []int{30000}}, "1 ports for 2 m= lines"},
		{"no ports", good, &Rewrite{Addr: v4}, "0 ports for 2 m= lines"},
		{"invalid rewrite address", good, &Rewrite{Ports: []int{30000, 30002}}, "invalid rewrite address"},
		{"unspecified rewrite address", good, &Rewrite{Addr: netip.IPv4Unspecified(), Ports: []int{30000, 30002}}, "unspecified"},
		{"relay port 0", good, &Rewrite{Addr: v4, Ports: []int{0, 30002}}, "out of range"},
		{"relay port 65535", good, &Rewrite{Addr: v4, Ports: []int{65535, 30002}}, "out of range"},
		{"unknown rtcp-mux mode", good, &Rewrite{Addr: v4, Ports: []int{30000, 30002}, RTCPMux: "yes"}, "rtcp-mux mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errs []error
			if tt.rw == nil {
				info, err := ParseSDP(tt.sdp)
				if err == nil {
					t.Fatalf("ParseSDP: no error, got %+v", info)
				}
				errs = append(errs, err)
				_, err = RewriteSDP(tt.sdp, Rewrite{Addr: v4, Ports: []int{30000}})
				if err == nil {
					t.Fatal("RewriteSDP: no error")
				}
				errs = append(errs, err)
			} else {
				out, err := RewriteSDP(tt.sdp, *tt.rw)
				if err == nil {
					t.Fatalf("RewriteSDP: no error, got %q", out)
				}
				errs = append(errs, err)
			}
			for _, err := range errs {
				if !errors.Is(err, ErrBadSDP) {
					t.Errorf("error %v does not wrap ErrBadSDP", err)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q does not say %q", err, tt.want)
				}
			}
		})
	}
}

// TestRewriteSDPRejectedIgnoresPorts: the port given for a rejected stream
// is not used, whatever it is.
func TestRewriteSDPRejectedIgnoresPorts(t *testing.T) {
	in := sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
		"m=audio 1000 RTP/AVP 0", "m=video 0 RTP/AVP 96")
	for _, p := range []int{0, -1, 30002, 99999} {
		out, err := RewriteSDP(in, Rewrite{Addr: netip.MustParseAddr("203.0.113.1"), Ports: []int{30000, p}})
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		if !bytes.Contains(out, []byte("\r\nm=video 0 RTP/AVP 96\r\n")) {
			t.Errorf("port %d: rejected stream changed:\n%s", p, out)
		}
	}
}

// sdpSeeds are a few literal SDPs for the fuzzers; the golden inputs are
// added too.
var sdpSeeds = []string{
	"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n",
	"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\na=nortpproxy:yes\nm=audio 1000 RTP/AVP 0\nc=IN IP4 0.0.0.0\na=rtcp:1001 IN IP4 192.0.2.1\na=sendonly\nm=video 0 RTP/AVP 96\n",
	"v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\na=ice-lite\r\nm=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=candidate:1 1 UDP 1 10.0.0.1 9 typ host\r\na=rtcp-mux\r\nm=video 9 RTP/AVP 96\r\nc=IN IP4 224.2.1.1/127/3\r\n",
	"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 1000/2 RTP/AVP 0\r\ni=title\r\nb=AS:64\r\nk=prompt\r\na=inactive\r\n",
}

func addSDPSeeds(f *testing.F, add func(string)) {
	for _, s := range sdpSeeds {
		add(s)
	}
	paths, _ := filepath.Glob(filepath.Join(sdpGoldenDir, "*.txt"))
	for _, path := range paths {
		gc := readGolden(f, path)
		add(strings.Join(gc.input, "\r\n") + "\r\n")
	}
}

func FuzzParseSDP(f *testing.F) {
	addSDPSeeds(f, func(s string) { f.Add([]byte(s)) })
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseSDP(b)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) {
				t.Fatalf("error %v does not wrap ErrBadSDP", err)
			}
			return
		}
		if len(info.Streams) == 0 {
			t.Fatal("no streams and no error")
		}
		for i, st := range info.Streams {
			if st.Index != i || st.Port < 0 || st.Port > 65535 {
				t.Fatalf("stream %d: %+v", i, st)
			}
		}
	})
}

func FuzzRewriteSDP(f *testing.F) {
	addSDPSeeds(f, func(s string) { f.Add([]byte(s), uint16(30000), uint8(0)) })
	f.Add([]byte(sdpSeeds[2]), uint16(65534), uint8(0xff))
	f.Fuzz(func(t *testing.T, b []byte, port uint16, flags uint8) {
		rw := Rewrite{
			Addr:          netip.MustParseAddr("203.0.113.1"),
			ReplaceOrigin: flags&1 != 0,
			RemoveICE:     flags&2 != 0,
			LoopProtect:   flags&4 != 0,
			RTCPMux:       []string{"", "offer", "reject", "demux"}[flags>>3&3],
		}
		if flags&32 != 0 {
			rw.Addr = netip.MustParseAddr("2001:db8::1")
		}
		orig, perr := ParseSDP(b)
		n := 1
		if perr == nil {
			n = len(orig.Streams)
		}
		for i := range n {
			rw.Ports = append(rw.Ports, int(port)+2*i)
		}
		out, err := RewriteSDP(b, rw)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) {
				t.Fatalf("error %v does not wrap ErrBadSDP", err)
			}
			return
		}
		if perr != nil {
			t.Fatalf("ParseSDP failed (%v) but RewriteSDP did not", perr)
		}
		got, err := ParseSDP(out)
		if err != nil {
			t.Fatalf("rewritten SDP does not parse: %v\n%q", err, out)
		}
		checkRewritten(t, orig, got, rw)
	})
}
