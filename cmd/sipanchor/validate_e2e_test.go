package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// badRequest is one malformed request, written after the shapes of RFC 4475
// §3.1.2 (invalid messages) and §3.4 where one applies. {VIA} and {CALLID}
// are filled in per send; lines end in LF here and CRLF on the wire, and
// Content-Length is as written (it is often the thing under test).
type badRequest struct {
	name   string
	reason string // the 400's reason phrase; "" = must not be rejected
	status int    // expected status when reason is ""
	framed bool   // over TCP the message's end is known, so the connection lives on
	text   string
	// tcpReason, when set, is the 400's reason over TCP, where the
	// stream framing reads the message first (Content-Length decides
	// where it ends).
	tcpReason string
}

var sdpBody = "v=0\r\no=- 1 1 IN IP4 192.0.2.53\r\ns=-\r\nc=IN IP4 192.0.2.53\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0\r\n"

var badRequests = []badRequest{
	{name: "CSeq not a number", reason: "Bad CSeq", framed: true, text: `INVITE sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: abc INVITE
Contact: <sip:alice@127.0.0.2>
Content-Length: 0

`},
	// scalar02: CSeq beyond 2**32-1; Max-Forwards and expiries out of range too.
	{name: "scalar02 CSeq out of range", reason: "Bad CSeq", framed: true, text: `REGISTER sip:example.test SIP/2.0
{VIA}
To: <sip:user@example.test>
From: <sip:user@example.test>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: {CALLID}
Max-Forwards: 300
Expires: 10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
Contact: <sip:user@127.0.0.2>
  ;expires=280297596632815
Content-Length: 0

`},
	{name: "Max-Forwards a word", reason: "Bad Max-Forwards", framed: true, text: `INVITE sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: ten
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 INVITE
Content-Length: 0

`},
	{name: "Max-Forwards 300 digits", reason: "Bad Max-Forwards", framed: true, text: `OPTIONS sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: ` + strings.Repeat("9", 300) + `
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 OPTIONS
Content-Length: 0

`},
	// ncl: a negative Content-Length; over TCP the message has no end.
	{name: "ncl negative Content-Length", reason: "Bad Content-Length", text: `INVITE sip:bob@example.test SIP/2.0
Max-Forwards: 254
To: sip:bob@example.test
From: sip:caller@example.net;tag=32394234
Call-ID: {CALLID}
CSeq: 0 INVITE
{VIA}
Contact: <sip:caller@127.0.0.2>
Content-Type: application/sdp
Content-Length: -999

` + sdpBody},
	{name: "Content-Length a word", reason: "Bad Content-Length", text: `OPTIONS sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 OPTIONS
Content-Length: none

`},
	{name: "From without URI", reason: "Bad From", framed: true, text: `INVITE sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: 70
From: nobody;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 INVITE
Content-Length: 0

`},
	{name: "From URI without host", reason: "Bad From", framed: true, text: `INVITE sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 INVITE
Content-Length: 0

`},
	// quotbal: an unterminated quoted display name.
	{name: "quotbal", reason: "Bad To", framed: true, text: `INVITE sip:bob@example.test SIP/2.0
To: "Mr. J. User <sip:j.user@example.test>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: {CALLID}
Contact: <sip:caller@127.0.0.2>
CSeq: 8 INVITE
{VIA}
Content-Type: application/sdp
Content-Length: ` + strconv.Itoa(len(sdpBody)) + `

` + sdpBody},
	// badaspec: spaces inside the <> of an addr-spec.
	{name: "badaspec", reason: "Bad To", framed: true, text: `OPTIONS sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.test >
Call-ID: {CALLID}
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

`},
	{name: "empty Call-ID", reason: "Bad Call-ID", framed: true, text: `OPTIONS sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID:
CSeq: 1 OPTIONS
Content-Length: 0

`},
	// insuf: no Call-ID, From or To.
	{name: "insuf", reason: "Missing From", framed: true, text: `INVITE sip:bob@example.test SIP/2.0
CSeq: 193942 INVITE
{VIA}
Content-Type: application/sdp
l: ` + strconv.Itoa(len(sdpBody)) + `

` + sdpBody},
	{name: "bad second Via", reason: "Bad Via", framed: true, text: `OPTIONS sip:bob@example.test SIP/2.0
{VIA}
Via: SIP/2.0/UDP
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 OPTIONS
Content-Length: 0

`},
	{name: "unterminated Contact", reason: "Bad Contact", framed: true, text: `INVITE sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 INVITE
Contact: <sip:alice@127.0.0.2;transport=udp
Content-Length: 0

`},
	// ltgtruri: the Request-URI enclosed in <>.
	{name: "ltgtruri", reason: "Bad Request-URI", framed: true, text: `INVITE <sip:bob@example.test> SIP/2.0
To: sip:bob@example.test
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: {CALLID}
CSeq: 1 INVITE
{VIA}
Content-Length: 0

`},
	// lwsruri: LWS inside the Request-URI.
	{name: "lwsruri", reason: "Bad Request Line", framed: true, text: `INVITE sip:bob@example.test; lr SIP/2.0
To: sip:bob@example.test
From: sip:caller@example.net;tag=234332
Max-Forwards: 19
Call-ID: {CALLID}
CSeq: 139122385 INVITE
{VIA}
Content-Length: 0

`},
	// mismatch01: answered before this change too; stays answered.
	{name: "mismatch01", reason: "CSeq Method Mismatch", framed: true, text: `OPTIONS sip:bob@example.test SIP/2.0
To: sip:bob@example.test
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: {CALLID}
CSeq: 1 INVITE
{VIA}
Content-Length: 0

`},
	// regaut01: an unknown Authorization scheme is no reason for a 400; the
	// registrar (without auth) takes the REGISTER.
	{name: "regaut01", status: 200, framed: true, text: `REGISTER sip:example.test SIP/2.0
To: sip:j.user@example.test
From: sip:j.user@example.test;tag=87321hj23128
Max-Forwards: 8
Call-ID: {CALLID}
CSeq: 9338 REGISTER
{VIA}
Authorization: NoOneKnowsThisScheme opaque-data=here
Contact: <sip:j.user@127.0.0.2>
Content-Length:0

`},
	{name: "badvers: SIP/7.0 (RFC 4475 §3.1.2.16)", reason: "", status: 505, framed: true, text: `OPTIONS sip:bob@example.test SIP/7.0
{VIA}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 OPTIONS
Content-Length: 0

`},
	{name: "unkscm: unknown Request-URI scheme (§3.3.2)", reason: "", status: 416, framed: true, text: `OPTIONS nobodyknowsthisscheme:totallyopaquecontent SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 OPTIONS
Content-Length: 0

`},
	{name: "novelsc: a scheme the parser cannot read (§3.3.3)", reason: "", status: 416, framed: true, text: `OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 OPTIONS
Content-Length: 0

`},
	{name: "bext01: Proxy-Require we do not support (§3.3.5)", reason: "", status: 420, framed: true, text: `OPTIONS sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 OPTIONS
Proxy-Require: noProxyReq
Content-Length: 0

`},
	// lwsstart (§3.1.2.9): more than one SP between Request-Line elements.
	{name: "lwsstart", reason: "Bad Request Line", framed: true, text: `INVITE  sip:bob@example.test  SIP/2.0
To: sip:bob@example.test
From: sip:caller@example.net;tag=1
Max-Forwards: 8
Call-ID: {CALLID}
CSeq: 1 INVITE
{VIA}
Content-Length: 0

`},
	// trws (§3.1.2.10): SP at the end of the Request-Line.
	{name: "trws", reason: "Bad Request Line", framed: true, text: "OPTIONS sip:bob@example.test SIP/2.0  \nTo: sip:bob@example.test\nFrom: sip:caller@example.net;tag=2\nMax-Forwards: 70\nCall-ID: {CALLID}\nCSeq: 1 OPTIONS\n{VIA}\nContent-Length: 0\n\n"},
	// badinv01 (§3.1.2.1): extraneous header field separators.
	{name: "badinv01", reason: "Bad Via", framed: true, text: `INVITE sip:bob@example.test SIP/2.0
To: sip:bob@example.test;;;;
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: {CALLID}
CSeq: 8 INVITE
{VIA};;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: 0

`},
	// mcl01 (§3.3.9): two Content-Length values that disagree.
	{name: "mcl01", reason: "Content-Length Mismatch", tcpReason: "Bad Content-Length", framed: false, text: `OPTIONS sip:bob@example.test SIP/2.0
{VIA}
To: sip:bob@example.test
From: sip:caller@example.net;tag=3
Max-Forwards: 70
Call-ID: {CALLID}
CSeq: 1 OPTIONS
Content-Length: 0
Content-Length: 4

`},
	{name: "multi01: two Call-IDs (§3.3.8)", reason: "Duplicate Call-ID", status: 0, framed: true, text: `OPTIONS sip:bob@example.test SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: 1 OPTIONS
Call-ID: another-call-id
Content-Length: 0

`},
}

// rawPeer is a raw SIP socket: it sends bytes exactly as given and reads
// responses as text, because a 400 to a broken request may copy the broken
// header and so not parse itself.
type rawPeer struct {
	t     *testing.T
	pc    net.PacketConn
	tc    net.Conn
	proxy *net.UDPAddr
	buf   []byte // TCP bytes read but not yet returned
}

func newRawPeer(t *testing.T, transport string, p *proxy) *rawPeer {
	t.Helper()
	r := &rawPeer{t: t, proxy: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p.port}}
	var err error
	if transport == "udp" {
		r.pc, err = net.ListenPacket("udp", "127.0.0.2:0")
	} else {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		r.tc, err = d.Dial("tcp", r.proxy.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.close() })
	return r
}

func (r *rawPeer) close() {
	if r.pc != nil {
		r.pc.Close()
	}
	if r.tc != nil {
		r.tc.Close()
	}
}

func (r *rawPeer) transport() string {
	if r.tc != nil {
		return "TCP"
	}
	return "UDP"
}

func (r *rawPeer) local() string {
	if r.tc != nil {
		return r.tc.LocalAddr().String()
	}
	return r.pc.LocalAddr().String()
}

// fill replaces {VIA} and {CALLID} and turns LF into CRLF.
func (r *rawPeer) fill(text, branch, callID string) []byte {
	via := fmt.Sprintf("Via: SIP/2.0/%s %s;branch=z9hG4bK%s;rport", r.transport(), r.local(), branch)
	head, body, _ := strings.Cut(text, "\n\n")
	head = strings.NewReplacer("{VIA}", via, "{CALLID}", callID).Replace(head)
	return []byte(strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n" + body)
}

func (r *rawPeer) send(b []byte) {
	r.t.Helper()
	var err error
	if r.tc != nil {
		_, err = r.tc.Write(b)
	} else {
		_, err = r.pc.WriteTo(b, r.proxy)
	}
	if err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// next reads the next final response (they carry no body here), skipping
// provisional ones; io.EOF when the proxy closed the TCP connection.
func (r *rawPeer) next(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		msg, err := r.read(deadline)
		if err != nil || !strings.HasPrefix(statusLine(msg), "SIP/2.0 1") {
			return msg, err
		}
	}
}

func (r *rawPeer) read(deadline time.Time) (string, error) {
	if r.pc != nil {
		_ = r.pc.SetReadDeadline(deadline)
		b := make([]byte, 65536)
		n, _, err := r.pc.ReadFrom(b)
		if err != nil {
			return "", err
		}
		return string(b[:n]), nil
	}
	_ = r.tc.SetReadDeadline(deadline)
	for {
		if i := bytes.Index(r.buf, []byte("\r\n\r\n")); i >= 0 {
			msg := string(r.buf[:i+4])
			r.buf = r.buf[i+4:]
			return msg, nil
		}
		b := make([]byte, 65536)
		n, err := r.tc.Read(b)
		r.buf = append(r.buf, b[:n]...)
		if err != nil {
			return "", err
		}
	}
}

// statusLine is the first line of a response text.
func statusLine(msg string) string {
	line, _, _ := strings.Cut(msg, "\r\n")
	return line
}

// malformedTotal reads sipanchor_sip_malformed_total from /metrics.
func malformedTotal(t *testing.T, p *proxy) float64 {
	t.Helper()
	resp, err := http.Get(p.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "sipanchor_sip_malformed_total "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	t.Fatal("no sipanchor_sip_malformed_total in /metrics")
	return 0
}

// optionsToProxy is a well-formed OPTIONS to the proxy itself, answered 200.
func optionsToProxy(p *proxy) string {
	return fmt.Sprintf(`OPTIONS sip:127.0.0.1:%d SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=ok1
To: <sip:127.0.0.1:%d>
Call-ID: {CALLID}
CSeq: 1 OPTIONS
Content-Length: 0

`, p.port, p.port)
}

// TestBadRequestGets400 sends each malformed request over UDP and over TCP
// from a raw socket: each is answered 400 naming what is wrong, from the
// socket or over the connection it came in on, with Via and Call-ID copied
// (RFC 3261 §16.3, §8.2.6). Over TCP a message whose end is known leaves
// the connection usable. A normal call works afterwards.
func TestBadRequestGets400(t *testing.T) {
	p := startProxy(t, "")
	for _, tr := range []string{"udp", "tcp"} {
		for i, bc := range badRequests {
			t.Run(tr+"/"+bc.name, func(t *testing.T) {
				r := newRawPeer(t, tr, p)
				branch := fmt.Sprintf("bad%s%d", tr, i)
				callID := fmt.Sprintf("bad-%s-%d@127.0.0.2", tr, i)
				r.send(r.fill(bc.text, branch, callID))
				res, err := r.next(3 * time.Second)
				if err != nil {
					t.Fatalf("no response: %v", err)
				}
				reason := bc.reason
				if tr == "tcp" && bc.tcpReason != "" {
					reason = bc.tcpReason
				}
				want := fmt.Sprintf("SIP/2.0 400 %s", reason)
				if reason == "" {
					want = fmt.Sprintf("SIP/2.0 %d ", bc.status)
				}
				if got := statusLine(res); !strings.HasPrefix(got, want) {
					t.Fatalf("got %q, want %q\n%s", got, want, res)
				}
				if !strings.Contains(res, "branch=z9hG4bK"+branch) {
					t.Errorf("response lacks the request's Via:\n%s", res)
				}
				if strings.Contains(bc.text, "Call-ID: {CALLID}") && !strings.Contains(res, callID) {
					t.Errorf("response lacks the request's Call-ID:\n%s", res)
				}
				defer func() { // and the proxy answers a fresh OPTIONS after it
					q := r
					if tr == "tcp" && !bc.framed {
						q = newRawPeer(t, tr, p) // that connection is closed
					}
					q.send(q.fill(optionsToProxy(p), branch+"ok", callID+"-ok"))
					if res, err := q.next(3 * time.Second); err != nil || !strings.HasPrefix(statusLine(res), "SIP/2.0 200") {
						t.Errorf("OPTIONS after the 400: %q %v", statusLine(res), err)
					}
				}()
				if tr != "tcp" {
					return
				}
				if !bc.framed {
					// No end to the message: the connection is closed after the answer.
					if res, err := r.next(3 * time.Second); err != io.EOF {
						t.Errorf("connection not closed after unframeable message: %q %v", statusLine(res), err)
					}
					return
				}
			})
		}
	}

	// A request without a usable Via cannot be answered: it is dropped and
	// counted. The next response on the same socket is the one to the good
	// OPTIONS that follows, so nothing answered the bad one.
	noVia := `INVITE sip:bob@example.test SIP/2.0
Via: junk
Max-Forwards: 70
From: <sip:alice@example.test>;tag=f1
To: <sip:bob@example.test>
Call-ID: {CALLID}
CSeq: abc INVITE
Content-Length: 0

`
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr+"/no usable Via", func(t *testing.T) {
			r := newRawPeer(t, tr, p)
			before := malformedTotal(t, p)
			r.send(r.fill(noVia, "nv", "novia-"+tr))
			eventually(t, 3*time.Second, func() bool { return malformedTotal(t, p) > before }, "bad message counted")
			r.send(r.fill(optionsToProxy(p), "nvok", "novia-ok-"+tr))
			res, err := r.next(3 * time.Second)
			if err != nil || !strings.HasPrefix(statusLine(res), "SIP/2.0 200") || !strings.Contains(res, "novia-ok-"+tr) {
				t.Errorf("first response %q %v, want the 200 to the good OPTIONS", statusLine(res), err)
			}
		})
	}

	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	dc, _ := call(t, alice, bob)
	alice.request(dc, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))
	if !p.alive() {
		t.Fatal("proxy died")
	}
}
