package sip

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// req builds a request from LF-separated header lines (CRLF on the wire).
func req(start string, headers ...string) string {
	return start + "\r\n" + strings.Join(headers, "\r\n") + "\r\n\r\n"
}

const (
	tVia  = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKt1"
	tFrom = "From: <sip:a@example.test>;tag=f1"
	tTo   = "To: <sip:b@example.test>"
	tCID  = "Call-ID: t1@192.0.2.1"
	tCL0  = "Content-Length: 0"
)

// screenCases are RFC 4475 §3.1.2 shapes and the other header problems
// that sipgo's parser stops at.
var screenCases = []struct {
	name, msg, reason string
	answered          bool
}{
	{"good", req("INVITE sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", tCL0), "", false},
	{"response", req("SIP/2.0 200 OK", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", tCL0), "", false},
	{"CSeq word", req("INVITE sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: abc INVITE", tCL0), "Bad CSeq", true},
	{"CSeq too large", req("REGISTER sip:example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 36893488147419103232 REGISTER", tCL0), "Bad CSeq", true},
	{"Max-Forwards word", req("INVITE sip:b@example.test SIP/2.0", tVia, "Max-Forwards: ten", tFrom, tTo, tCID, "CSeq: 1 INVITE", tCL0), "Bad Max-Forwards", true},
	{"Max-Forwards 300 digits", req("INVITE sip:b@example.test SIP/2.0", tVia, "Max-Forwards: "+strings.Repeat("7", 300), tFrom, tTo, tCID, "CSeq: 1 INVITE", tCL0), "Bad Max-Forwards", true},
	{"ncl", req("INVITE sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", "Content-Length: -999") + "v=0\r\n", "Bad Content-Length", true},
	{"Content-Length too long", req("INVITE sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", "Content-Length: 50") + "v=0\r\n", "Content-Length Mismatch", true},
	{"From no URI", req("INVITE sip:b@example.test SIP/2.0", tVia, "From: nobody;tag=1", tTo, tCID, "CSeq: 1 INVITE", tCL0), "Bad From", true},
	{"From no host", req("INVITE sip:b@example.test SIP/2.0", tVia, "From: <sip:>;tag=1", tTo, tCID, "CSeq: 1 INVITE", tCL0), "Bad From", true},
	{"To no host", req("INVITE sip:b@example.test SIP/2.0", tVia, tFrom, "To: <sip:@>", tCID, "CSeq: 1 INVITE", tCL0), "Bad To", true},
	{"tel To", req("INVITE sip:b@example.test SIP/2.0", tVia, tFrom, "To: <tel:+15551234>", tCID, "CSeq: 1 INVITE", tCL0), "", false},
	{"quotbal", req("INVITE sip:b@example.test SIP/2.0", tVia, tFrom, `To: "Mr. J. User <sip:j.user@example.test>`, tCID, "CSeq: 1 INVITE", tCL0), "Bad To", true},
	{"badaspec", req("OPTIONS sip:b@example.test SIP/2.0", tVia, tFrom, `To: "Watson, Thomas" < sip:t.watson@example.test >`, tCID, "CSeq: 1 OPTIONS", "l: 0"), "Bad To", true},
	{"empty Call-ID", req("OPTIONS sip:b@example.test SIP/2.0", tVia, tFrom, tTo, "Call-ID:", "CSeq: 1 OPTIONS", tCL0), "Bad Call-ID", true},
	{"compact empty Call-ID", req("OPTIONS sip:b@example.test SIP/2.0", "v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKc", "f: <sip:a@x>;tag=1", "t: <sip:b@x>", "i:", "CSeq: 1 OPTIONS", "l: 0"), "Bad Call-ID", true},
	{"bad lower Via", req("OPTIONS sip:b@example.test SIP/2.0", tVia, "Via: SIP/2.0/UDP", tFrom, tTo, tCID, "CSeq: 1 OPTIONS", tCL0), "Bad Via", true},
	{"badinv01 separators", req("OPTIONS sip:b@example.test SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.15;;,;,,", tFrom, tTo, tCID, "CSeq: 1 OPTIONS", tCL0), "Bad Via", true},
	{"bad Contact", req("INVITE sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", "Contact: <sip:a@192.0.2.1", tCL0), "Bad Contact", true},
	{"header without colon", req("INVITE sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", "Junk", tCL0), "Malformed Header", true},
	{"ltgtruri", req("INVITE <sip:b@example.test> SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", tCL0), "Bad Request-URI", true},
	{"lwsruri", req("INVITE sip:b@example.test; lr SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", tCL0), "Bad Request Line", true},
	{"lwsstart", req("INVITE  sip:b@example.test  SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", tCL0), "Bad Request Line", true},
	{"trws", req("OPTIONS sip:b@example.test SIP/2.0 ", tVia, tFrom, tTo, tCID, "CSeq: 1 OPTIONS", tCL0), "Bad Request Line", true},
	{"mismatch01", req("OPTIONS sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", tCL0), "CSeq Method Mismatch", true},
	{"insuf", req("INVITE sip:b@example.test SIP/2.0", "CSeq: 1 INVITE", tVia, tCL0), "Missing From", true},
	{"no Via", req("INVITE sip:b@example.test SIP/2.0", tFrom, tTo, tCID, "CSeq: abc INVITE", tCL0), "Bad CSeq", false},
	{"junk Via", req("INVITE sip:b@example.test SIP/2.0", "Via: junk", tFrom, tTo, tCID, "CSeq: abc INVITE", tCL0), "Bad Via", false},
	{"Via without host", req("INVITE sip:b@example.test SIP/2.0", "Via: SIP/2.0/UDP ;branch=z9hG4bKx", tFrom, tTo, tCID, "CSeq: abc INVITE", tCL0), "Bad CSeq", false},
	{"ACK", req("ACK sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: abc ACK", tCL0), "Bad CSeq", false},
	{"bad response", req("SIP/2.0 200 OK", tVia, tFrom, tTo, tCID, "CSeq: abc INVITE", tCL0), "Bad CSeq", false},
}

func TestScreen(t *testing.T) {
	p := sip.NewParser()
	for _, tc := range screenCases {
		t.Run(tc.name, func(t *testing.T) {
			_, r := screen(p, []byte(tc.msg), false)
			if tc.reason == "" {
				if r != nil {
					t.Fatalf("refused %q, want passed", r.reason)
				}
				return
			}
			if r == nil {
				t.Fatalf("passed, want %q", tc.reason)
			}
			if r.reason != tc.reason {
				t.Errorf("reason %q, want %q", r.reason, tc.reason)
			}
			if (r.reply != nil) != tc.answered {
				t.Fatalf("answered %v, want %v", r.reply != nil, tc.answered)
			}
			if r.reply == nil {
				return
			}
			reply := string(r.reply)
			if want := "SIP/2.0 400 " + tc.reason + "\r\n"; !strings.HasPrefix(reply, want) {
				t.Errorf("reply starts %q, want %q", reply[:min(len(reply), 40)], want)
			}
			// RFC 3261 §8.2.6.2: what of the request is readable is copied.
			head, _, _ := strings.Cut(tc.msg, "\r\n\r\n")
			for _, l := range strings.Split(head, "\r\n")[1:] {
				name, _, _ := strings.Cut(l, ":")
				switch strings.ToLower(name) {
				case "via", "v", "from", "f", "call-id", "i", "cseq":
					_, value, _ := strings.Cut(l, ":")
					if !strings.Contains(reply, strings.TrimSpace(value)+"\r\n") {
						t.Errorf("reply lacks %q:\n%s", l, reply)
					}
				}
			}
			if strings.Contains(tc.msg, tTo) && !strings.Contains(reply, tTo+";tag=") {
				t.Errorf("reply To has no tag:\n%s", reply)
			}
		})
	}
}

// fakeConn is the peer's side of a TCP connection: Read hands out chunks
// and then io.EOF, Write records.
type fakeConn struct {
	net.Conn
	chunks [][]byte
	wrote  bytes.Buffer
}

func (f *fakeConn) Read(b []byte) (int, error) {
	if len(f.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, f.chunks[0])
	if f.chunks[0] = f.chunks[0][n:]; len(f.chunks[0]) == 0 {
		f.chunks = f.chunks[1:]
	}
	return n, nil
}

func (f *fakeConn) Write(b []byte) (int, error) { return f.wrote.Write(b) }
func (f *fakeConn) RemoteAddr() net.Addr        { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5060} }

// chunked splits data into pieces of size n.
func chunked(data []byte, n int) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		k := min(n, len(data))
		out = append(out, data[:k:k])
		data = data[k:]
	}
	return out
}

// readAll reads a screenConn to its end, as sipgo's reader would.
func readAll(t testing.TB, c *screenConn) ([]byte, error) {
	var out []byte
	b := make([]byte, 1000)
	for range 100000 {
		n, err := c.Read(b)
		out = append(out, b[:n]...)
		if err != nil {
			return out, err
		}
	}
	t.Fatal("screenConn never ended")
	return nil, nil
}

func newScreenConn(f *fakeConn, bad *[]string) *screenConn {
	l := &screenListener{parser: sip.NewParser(), bad: func(reason string, _ net.Addr) { *bad = append(*bad, reason) }}
	return &screenConn{Conn: f, l: l}
}

func TestScreenConn(t *testing.T) {
	good := req("OPTIONS sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 OPTIONS", tCL0)
	badCSeq := req("OPTIONS sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: x OPTIONS", tCL0)
	withBody := req("MESSAGE sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 2 MESSAGE", "Content-Length: 5") + "hello"
	tests := []struct {
		name   string
		stream string
		want   string   // what sipgo gets
		bad    []string // refused, in order
		wrote  []string // status lines answered, in order
	}{
		{"bad message skipped, stream goes on", good + badCSeq + "\r\n\r\n" + withBody, good + "\r\n\r\n" + withBody, []string{"Bad CSeq"}, []string{"SIP/2.0 400 Bad CSeq"}},
		{"negative Content-Length closes", req("OPTIONS sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 OPTIONS", "Content-Length: -1") + good, "", []string{"Bad Content-Length"}, []string{"SIP/2.0 400 Bad Content-Length"}},
		{"missing Content-Length closes", req("OPTIONS sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 OPTIONS") + good, "", []string{"Missing Content-Length"}, []string{"SIP/2.0 400 Missing Content-Length"}},
		{"disagreeing Content-Lengths close", req("OPTIONS sip:b@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 OPTIONS", tCL0, "l: 4") + "abcd", "", []string{"Bad Content-Length"}, []string{"SIP/2.0 400 Bad Content-Length"}},
		{"not SIP closes at once", "GET / HTTP/1.1\r\nHost: x\r\n", "", []string{"Not SIP"}, nil},
		{"too large", good[:len(good)-2] + "X-Big: " + strings.Repeat("a", 70000) + "\r\n\r\n", "", []string{"Message Too Large"}, []string{"SIP/2.0 513 Message Too Large"}},
		{"cut short in the headers", good + good[:40], good, nil, nil},
		{"cut short in the body", good + withBody[:len(withBody)-2], good, nil, nil},
		{"unanswerable bad message skipped", strings.Replace(badCSeq, tVia+"\r\n", "", 1) + good, good, []string{"Bad CSeq"}, nil},
	}
	for _, tc := range tests {
		for _, size := range []int{1, 7, 100000} {
			var bad []string
			f := &fakeConn{chunks: chunked([]byte(tc.stream), size)}
			got, err := readAll(t, newScreenConn(f, &bad))
			if !errors.Is(err, io.EOF) {
				t.Errorf("%s/%d: ended with %v, want EOF", tc.name, size, err)
			}
			if string(got) != tc.want {
				t.Errorf("%s/%d: sipgo got %q\nwant %q", tc.name, size, got, tc.want)
			}
			if strings.Join(bad, ",") != strings.Join(tc.bad, ",") {
				t.Errorf("%s/%d: refused %q, want %q", tc.name, size, bad, tc.bad)
			}
			var lines []string
			for _, m := range strings.SplitAfter(f.wrote.String(), "\r\n\r\n") {
				if m != "" {
					lines = append(lines, strings.SplitN(m, "\r\n", 2)[0])
				}
			}
			if strings.Join(lines, ",") != strings.Join(tc.wrote, ",") {
				t.Errorf("%s/%d: answered %q, want %q", tc.name, size, lines, tc.wrote)
			}
		}
	}
}

func screenSeeds(f *testing.F) {
	for _, tc := range screenCases {
		f.Add([]byte(tc.msg))
	}
	f.Add([]byte(req("REGISTER sip:example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 REGISTER", "Contact: <sip:a@192.0.2.1>", "  ;expires=280297596632815", tCL0)))
	f.Add([]byte("\r\n\r\nINVITE sip:x SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 3\r\n\r\nabc"))
	for _, name := range tortureValid {
		f.Add(readTorture(f, name))
	}
}

// FuzzScreen: any message is passed or refused without panicking, and a
// reply is a 400 (or 416, 420, 505) whose header lines are whole lines.
func FuzzScreen(f *testing.F) {
	screenSeeds(f)
	p := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		_, r := screen(p, data, false)
		if r == nil || r.reply == nil {
			return
		}
		if !validRejection(r.reply) || !bytes.HasSuffix(r.reply, []byte("\r\n\r\n")) {
			t.Fatalf("reply %q", r.reply)
		}
		head := bytes.TrimSuffix(r.reply, []byte("\r\n\r\n"))
		for _, l := range bytes.Split(head, []byte("\r\n")) {
			if bytes.ContainsAny(l, "\r\n") {
				t.Fatalf("reply line %q", l)
			}
		}
		if scanMessage(data).method() == "ACK" {
			t.Fatal("answered an ACK")
		}
	})
}

// FuzzScreenConn: a TCP stream cut into chunks of any size ends, and what
// it passes to sipgo parses into complete, valid messages.
func FuzzScreenConn(f *testing.F) {
	screenSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		size := 1
		if len(data) > 0 {
			size = int(data[0])%64 + 1
		}
		var bad []string
		got, _ := readAll(t, newScreenConn(&fakeConn{chunks: chunked(data, size)}, &bad))
		ps := sip.NewParser().NewSIPStream()
		err := ps.ParseSIPStream(got, func(m sip.Message) {
			if r, ok := m.(*sip.Request); ok {
				restoreMethod(r) // as the proxy does
				if cerr := checkRequest(r); cerr != nil {
					t.Fatalf("passed an invalid request: %v", cerr)
				}
			}
		})
		if errors.Is(err, sip.ErrParseSipPartial) && len(bytes.Trim(ps.Buffer().Bytes(), "\r\n")) == 0 {
			err = nil // keepalive CRLFs after the last message
		}
		if err != nil {
			t.Fatalf("passed what does not parse: %v\n%q", err, got)
		}
	})
}

// validRejection: a reply screen may send, 400 or a proxy rule's code.
func validRejection(reply []byte) bool {
	for _, code := range []string{"400", "416", "420", "505"} {
		if bytes.HasPrefix(reply, []byte("SIP/2.0 "+code+" ")) {
			return true
		}
	}
	return false
}
