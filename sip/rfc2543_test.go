package sip

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// tortureValid are RFC 4475 messages (testdata/torture) that screen must
// pass: §3.1.1.1 wsinv, §3.1.1.2 intmeth, §3.1.1.7 longreq and §3.4.1
// inv2543, which is "invalid" only for being RFC 2543.
var tortureValid = []string{"wsinv", "intmeth", "longreq", "inv2543"}

// TestScreenTortureValid: each passes, parses, keeps its method as written
// and has a top Via branch sipgo matches as RFC 3261's.
func TestScreenTortureValid(t *testing.T) {
	p := sip.NewParser()
	for _, name := range tortureValid {
		t.Run(name, func(t *testing.T) {
			data := readTorture(t, name)
			out, r := screen(p, data, false)
			if r != nil {
				t.Fatalf("refused %q", r.reason)
			}
			req := mustRequest(t, out)
			method, _, _ := strings.Cut(string(data), " ")
			if restoreMethod(req); string(req.Method) != method {
				t.Errorf("method %q, want %q", req.Method, method)
			}
			if !bytes.HasPrefix(out, []byte(method+" ")) {
				t.Errorf("request line rewritten: %q", out[:40])
			}
			if b, _ := req.Via().Params.Get("branch"); !strings.HasPrefix(b, sip.RFC3261BranchMagicCookie) {
				t.Errorf("top branch %q", b)
			}
			if _, err := sip.ServerTxKeyMake(req); err != nil {
				t.Errorf("no transaction key: %v", err)
			}
		})
	}
}

func mustRequest(t testing.TB, b []byte) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	req, ok := m.(*sip.Request)
	if !ok {
		t.Fatalf("not a request:\n%s", b)
	}
	return req
}

// keyed is what screen passes on for msg.
func keyed(t testing.TB, msg string) *sip.Request {
	t.Helper()
	out, r := screen(sip.NewParser(), []byte(msg), false)
	if r != nil {
		t.Fatalf("refused %q:\n%s", r.reason, msg)
	}
	return mustRequest(t, out)
}

// TestKeyRFC2543: RFC 3261 §17.2.3's matching of RFC 2543 requests, as
// sipgo's transaction layer sees it after screen: a retransmission, the
// ACK of a non-2xx answer and the CANCEL match the INVITE; another CSeq,
// Request-URI (an ACK of a 2xx goes to the Contact) or sent-by does not.
func TestKeyRFC2543(t *testing.T) {
	inv := req("INVITE sip:bob@example.test SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.5:5060", "From: <sip:a@example.net;user=phone>",
		"To: sip:bob@example.test", "Call-ID: k1@192.0.2.5", "CSeq: 56 INVITE", tCL0)
	key := func(msg string) string {
		k, err := sip.ServerTxKeyMake(keyed(t, msg))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	branch := func(msg string) string {
		b, _ := keyed(t, msg).Via().Params.Get("branch")
		return b
	}
	k := key(inv)
	if key(inv) != k {
		t.Error("a retransmission is another transaction")
	}
	ack := strings.NewReplacer("INVITE sip", "ACK sip", "56 INVITE", "56 ACK", "To: sip:bob@example.test", "To: sip:bob@example.test;tag=x1").Replace(inv)
	if key(ack) != k {
		t.Error("the ACK of a non-2xx is another transaction")
	}
	cancel := strings.NewReplacer("INVITE sip", "CANCEL sip", "56 INVITE", "56 CANCEL").Replace(inv)
	if branch(cancel) != branch(inv) {
		t.Error("the CANCEL has another branch than its INVITE")
	}
	for name, other := range map[string]string{
		"CSeq":        strings.Replace(inv, "CSeq: 56", "CSeq: 57", 1),
		"Request-URI": strings.Replace(ack, "ACK sip:bob@example.test", "ACK sip:bob@192.0.2.7", 1),
		"sent-by":     strings.Replace(inv, "192.0.2.5:5060", "192.0.2.5:5062", 1),
		"From tag":    strings.Replace(inv, "user=phone>", "user=phone>;tag=9", 1),
		"Call-ID":     strings.Replace(inv, "k1@", "k2@", 1),
	} {
		if key(other) == k {
			t.Errorf("another %s, the same transaction", name)
		}
	}
	rfc3261 := req("INVITE sip:bob@example.test SIP/2.0", tVia, tFrom, tTo, tCID, "CSeq: 1 INVITE", tCL0)
	if out, _ := screen(sip.NewParser(), []byte(rfc3261), false); string(out) != rfc3261 {
		t.Errorf("an RFC 3261 request was rewritten:\n%s", out)
	}
}

// TestRestoreVia: a response to a keyed request leaves with the top Via
// as the client sent it, with what sipgo added on receipt (received).
func TestRestoreVia(t *testing.T) {
	tests := []struct{ name, via, want string }{
		{"no branch", "Via: SIP/2.0/UDP 192.0.2.5", "Via: SIP/2.0/UDP 192.0.2.5;received=198.51.100.1"},
		{"RFC 2543 branch", "Via: SIP/2.0/UDP 192.0.2.2;branch=390skdjuw;x=1", "Via: SIP/2.0/UDP 192.0.2.2;branch=390skdjuw;x=1;received=198.51.100.1"},
		{"list", "v: SIP/2.0/TCP 192.0.2.2:5070 , SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb", "Via: SIP/2.0/TCP 192.0.2.2:5070;received=198.51.100.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := keyed(t, req("OPTIONS sip:b@example.test SIP/2.0", tt.via, tFrom, tTo, tCID, "CSeq: 1 OPTIONS", tCL0))
			r.Via().Params.Add("received", "198.51.100.1")
			res := []byte(sip.NewResponseFromRequest(r, 404, "Not Found", nil).String())
			got := restoreVia(res)
			if top := strings.Split(string(got), "\r\n")[1]; top != tt.want {
				t.Errorf("top Via %q, want %q", top, tt.want)
			}
			if !bytes.Equal(withoutVia(got), withoutVia(res)) {
				t.Errorf("more than the top Via changed:\n%s", got)
			}
		})
	}
	for _, msg := range []string{
		req("OPTIONS sip:b@example.test SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.5;branch="+rfc2543Prefix+"0123456789abcdef", tCL0),
		req("SIP/2.0 200 OK", "Via: SIP/2.0/UDP 192.0.2.5;branch="+rfc2543Prefix+"short", tCL0),
		req("SIP/2.0 200 OK", "Via: SIP/2.0/UDP 192.0.2.5;branch="+rfc2543Prefix+"0123456789abcdef.!!", tCL0),
		req("SIP/2.0 200 OK", tVia, "Via: SIP/2.0/UDP 192.0.2.5;branch="+rfc2543Prefix+"0123456789abcdef", tCL0),
	} {
		if got := restoreVia([]byte(msg)); string(got) != msg {
			t.Errorf("rewrote %q", got)
		}
	}
}

func withoutVia(b []byte) []byte {
	var keep [][]byte
	for _, l := range bytes.Split(b, []byte("\r\n")) {
		if !bytes.HasPrefix(l, []byte("Via: ")) {
			keep = append(keep, l)
		}
	}
	return bytes.Join(keep, []byte("\r\n"))
}

// TestRestoringWriters: sipgo's writes to a UDP listener and to an
// accepted TCP connection pass restoreVia, and report the length sipgo
// gave (it checks).
func TestRestoringWriters(t *testing.T) {
	r := keyed(t, req("OPTIONS sip:b@example.test SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5099", tFrom, tTo, tCID, "CSeq: 1 OPTIONS", tCL0))
	res := []byte(sip.NewResponseFromRequest(r, 200, "OK", nil).String())
	want := "\r\nVia: SIP/2.0/UDP 127.0.0.1:5099\r\n"

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if n, err := (restoringPacketConn{pc}).WriteTo(res, pc.LocalAddr()); err != nil || n != len(res) {
		t.Fatalf("WriteTo: %d %v, want %d", n, err, len(res))
	}
	buf := make([]byte, 2000)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || !bytes.Contains(buf[:n], []byte(want)) {
		t.Errorf("UDP sent %q %v", buf[:n], err)
	}

	f := &fakeConn{}
	var bad []string
	if n, err := newScreenConn(f, &bad).Write(res); err != nil || n != len(res) {
		t.Fatalf("Write: %d %v, want %d", n, err, len(res))
	}
	if !strings.Contains(f.wrote.String(), want) {
		t.Errorf("TCP sent %q", f.wrote.String())
	}
}

// FuzzRFC2543: whatever screen passes is keyed the same every time with a
// branch sipgo takes as RFC 3261's (unless keyRFC2543 declined a Via that
// sipgo would not read back as written), and a response to it leaves with
// the top Via's sent-by and branch as they were.
func FuzzRFC2543(f *testing.F) {
	screenSeeds(f)
	p := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		out, r := screen(p, data, false)
		if r != nil {
			return
		}
		if again, _ := screen(p, data, false); !bytes.Equal(again, out) {
			t.Fatalf("keyed twice differently:\n%q\n%q", out, again)
		}
		m, err := sip.ParseMessage(out)
		req, ok := m.(*sip.Request)
		if err != nil || !ok {
			return // responses pass as they are
		}
		before := mustRequest(t, normalizeLWS(data)).Via()
		if before.Host == "" || bytes.Equal(out, normalizeLWS(data)) {
			return // a Via sipgo cannot read back: left to sipgo's own matching
		}
		if b, _ := req.Via().Params.Get("branch"); !strings.HasPrefix(b, sip.RFC3261BranchMagicCookie) || b == sip.RFC3261BranchMagicCookie {
			t.Fatalf("top branch %q", b)
		}
		res := sip.NewResponseFromRequest(req, 404, "Not Found", nil)
		after := parsedTopVia(t, restoreVia([]byte(res.String())))
		ob, oh := before.Params.Get("branch")
		ab, ah := after.Params.Get("branch")
		if after.Host != before.Host || after.Port != before.Port || after.Transport != before.Transport || ob != ab || oh != ah {
			t.Fatalf("top Via %q, sent as %q", after.Value(), before.Value())
		}
	})
}

// parsedTopVia parses msg's first Via header alone (sipgo may write other
// headers it cannot read back).
func parsedTopVia(t *testing.T, msg []byte) *sip.ViaHeader {
	var v *sip.ViaHeader
	eachHeader(msg, func(h headerSpan) bool {
		if h.colon < 0 || !bytes.EqualFold(h.name(msg), []byte("Via")) {
			return true
		}
		hs, err := headerParsers.ParseHeader(nil, msg[h.start:h.end])
		if err != nil || len(hs) == 0 {
			t.Fatalf("restored Via does not parse: %v\n%s", err, msg)
		}
		v = hs[0].(*sip.ViaHeader)
		return false
	})
	if v == nil {
		t.Fatalf("no Via in\n%s", msg)
	}
	return v
}
