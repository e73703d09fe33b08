package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ua is a minimal SIP user agent on a real socket, written by hand so that
// it can say exactly what a UA behind NAT says: its Contact may name an
// address (e.g. 192.168.1.50) that is not where its packets come from.
type ua struct {
	t         *testing.T
	name      string
	transport string // "udp" or "tcp"
	pc        net.PacketConn
	tc        net.Conn
	local     *net.UDPAddr // or TCP local
	proxy     string       // "127.0.0.1:port"
	contact   string       // host:port written in Contact and Via
	in        chan sip.Message
	tag       string
	cseq      int

	lastInviteBranch string
}

// newUAOn binds a UDP ua at an exact address, e.g. an upstream carrier.
func newUAOn(t *testing.T, name, addr string, p *proxy) *ua {
	t.Helper()
	host, _, _ := net.SplitHostPort(addr)
	return newUAAt(t, name, addr, p, host)
}

// newUA binds a UDP socket on ip (e.g. "127.0.0.2") and writes contactHost
// in its Contact (its own address when empty).
func newUA(t *testing.T, name, ip string, p *proxy, contactHost string) *ua {
	t.Helper()
	return newUAAt(t, name, ip+":0", p, contactHost)
}

func newUAAt(t *testing.T, name, addr string, p *proxy, contactHost string) *ua {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	u := &ua{t: t, name: name, transport: "udp", pc: pc, local: pc.LocalAddr().(*net.UDPAddr),
		proxy: fmt.Sprintf("127.0.0.1:%d", p.port), in: make(chan sip.Message, 64), tag: randTag()}
	u.contact = u.local.String()
	if contactHost != "" {
		u.contact = net.JoinHostPort(contactHost, strconv.Itoa(u.local.Port))
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				close(u.in)
				return
			}
			m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			if err == nil {
				u.in <- m
			}
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return u
}

// newTCPUA connects to the proxy over TCP from ip.
func newTCPUA(t *testing.T, name, ip string, p *proxy, contactHost string) *ua {
	t.Helper()
	return dialTCPUA(t, name, ip, fmt.Sprintf("127.0.0.1:%d", p.port), contactHost)
}

// dialTCPUA connects to a proxy at addr over TCP from ip.
func dialTCPUA(t *testing.T, name, ip, addr, contactHost string) *ua {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	la := c.LocalAddr().(*net.TCPAddr)
	u := &ua{t: t, name: name, transport: "tcp", tc: c, local: &net.UDPAddr{IP: la.IP, Port: la.Port},
		proxy: addr, in: make(chan sip.Message, 64), tag: randTag()}
	u.contact = net.JoinHostPort(contactHost, "5060")
	go func() {
		par := sip.NewParser().NewSIPStream()
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(u.in)
				return
			}
			_ = par.ParseSIPStream(buf[:n], func(m sip.Message) { u.in <- m })
		}
	}()
	t.Cleanup(func() { c.Close() })
	return u
}

func randTag() string { return strconv.FormatUint(rand.Uint64(), 36) }

// send writes raw SIP text (LF or CRLF line ends) with Content-Length fixed.
func (u *ua) send(msg string) {
	u.t.Helper()
	u.sendTo(msg, u.proxy)
}

func (u *ua) sendTo(msg, to string) {
	u.t.Helper()
	b := []byte(crlf(msg))
	var err error
	if u.tc != nil {
		_, err = u.tc.Write(b)
	} else {
		var a *net.UDPAddr
		a, err = net.ResolveUDPAddr("udp", to)
		if err == nil {
			_, err = u.pc.WriteTo(b, a)
		}
	}
	if err != nil {
		u.t.Fatalf("%s send: %v", u.name, err)
	}
}

// crlf normalises line ends and sets Content-Length to the body's size.
func crlf(msg string) string {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	head, body, _ := strings.Cut(msg, "\n\n")
	var lines []string
	for _, l := range strings.Split(head, "\n") {
		if !strings.HasPrefix(strings.ToLower(l), "content-length:") {
			lines = append(lines, l)
		}
	}
	body = strings.ReplaceAll(body, "\n", "\r\n")
	lines = append(lines, "Content-Length: "+strconv.Itoa(len(body)))
	return strings.Join(lines, "\r\n") + "\r\n\r\n" + body
}

// recv waits for the next message accepted by match (others are skipped).
func (u *ua) recv(what string, match func(sip.Message) bool) sip.Message {
	u.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-u.in:
			if !ok {
				u.t.Fatalf("%s: socket closed waiting for %s", u.name, what)
			}
			if match(m) {
				return m
			}
		case <-deadline:
			u.t.Fatalf("%s: no %s within 5s", u.name, what)
		}
	}
}

// quiet asserts that nothing matching arrives for d.
func (u *ua) quiet(what string, d time.Duration, match func(sip.Message) bool) {
	u.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-u.in:
			if ok && match(m) {
				u.t.Fatalf("%s: unexpected %s:\n%s", u.name, what, m)
			}
		case <-deadline:
			return
		}
	}
}

func isRequest(method string) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && string(r.Method) == method
	}
}

func isResponse(code int, method string) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode == code && (method == "" || string(r.CSeq().MethodName) == method)
	}
}

func isFinal(method string) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode >= 200 && string(r.CSeq().MethodName) == method
	}
}

func (u *ua) via(branch string) string {
	return fmt.Sprintf("Via: SIP/2.0/%s %s;branch=z9hG4bK%s;rport", strings.ToUpper(u.transport), u.contact, branch)
}

func (u *ua) contactHdr() string {
	if u.transport == "tcp" {
		return fmt.Sprintf("Contact: <sip:%s@%s;transport=tcp>", u.name, u.contact)
	}
	return fmt.Sprintf("Contact: <sip:%s@%s>", u.name, u.contact)
}

// register sends REGISTER for name@example.test and returns the final response.
func (u *ua) register(expires int) *sip.Response {
	u.t.Helper()
	u.cseq++
	u.send(fmt.Sprintf(`REGISTER sip:example.test SIP/2.0
%s
Max-Forwards: 70
From: <sip:%[2]s@example.test>;tag=%[3]s
To: <sip:%[2]s@example.test>
Call-ID: reg-%[2]s-%[3]s
CSeq: %[4]d REGISTER
%[5]s
Expires: %[6]d

`, u.via(randTag()), u.name, u.tag, u.cseq, u.contactHdr(), expires))
	return u.recv("REGISTER response", isFinal("REGISTER")).(*sip.Response)
}

// dlg is one call as seen by a ua.
type dlg struct {
	callID   string
	localTag string
	remote   string   // remote tag
	target   string   // remote target (Contact URI)
	routes   []string // route set, in order
	cseq     int
	local    string // local URI
	peer     string // remote URI
}

const sdpOffer = `v=0
o=- 1 1 IN IP4 192.168.1.50
s=-
c=IN IP4 192.168.1.50
t=0 0
m=audio 4000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
`

// invite sends an INVITE to uri and returns the dialog being set up.
func (u *ua) invite(uri string) *dlg {
	u.t.Helper()
	d := &dlg{callID: "call-" + randTag(), localTag: randTag(), cseq: 1,
		local: fmt.Sprintf("sip:%s@example.test", u.name), peer: uri}
	br := randTag()
	u.lastInviteBranch = "z9hG4bK" + br
	u.send(fmt.Sprintf(`INVITE %[1]s SIP/2.0
%[2]s
Max-Forwards: 70
From: <%[3]s>;tag=%[4]s
To: <%[1]s>
Call-ID: %[5]s
CSeq: 1 INVITE
%[6]s
Content-Type: application/sdp

%[7]s`, uri, u.via(br), d.local, d.localTag, d.callID, u.contactHdr(), sdpOffer))
	return d
}

// answer replies to an incoming INVITE with code; for 2xx it returns the
// callee's dialog.
func (u *ua) answer(inv *sip.Request, code int, reason string, toTag string) *dlg {
	u.t.Helper()
	res := sip.NewResponseFromRequest(inv, code, reason, nil)
	res.To().Params.Remove("tag")
	res.To().Params.Add("tag", toTag)
	body := ""
	if code == 200 {
		res.AppendHeader(sip.NewHeader("Contact", strings.TrimPrefix(u.contactHdr(), "Contact: ")))
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		body = sdpOffer
	}
	res.SetBody(nil)
	u.reply(res, body)
	if code != 200 {
		return nil
	}
	return calleeDialog(inv, toTag)
}

// reply sends a response (to the proxy: responses follow the Via).
func (u *ua) reply(res *sip.Response, body string) {
	u.t.Helper()
	s := res.String()
	head, _, _ := strings.Cut(s, "\r\n\r\n")
	u.send(head + "\n\n" + body)
}

// confirmed completes the caller's dialog from a 2xx.
func (d *dlg) confirmed(res *sip.Response) {
	d.remote, _ = res.To().Params.Get("tag")
	d.target = res.Contact().Address.String()
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		d.routes = append(d.routes, rr[i].Value())
	}
}

// request sends an in-dialog request (ACK keeps the INVITE's CSeq).
func (u *ua) request(d *dlg, method string) {
	u.t.Helper()
	u.requestBody(d, method, "")
}

// requestBody is request with an SDP body (none when body is empty).
func (u *ua) requestBody(d *dlg, method, body string) {
	u.t.Helper()
	if method != "ACK" {
		d.cseq++
	}
	var routes strings.Builder
	for _, r := range d.routes {
		routes.WriteString("Route: " + r + "\n")
	}
	u.send(fmt.Sprintf(`%[1]s %[2]s SIP/2.0
%[3]s
Max-Forwards: 70
%[4]sFrom: <%[5]s>;tag=%[6]s
To: <%[7]s>;tag=%[8]s
Call-ID: %[9]s
CSeq: %[10]d %[1]s
%[11]s

%[12]s`, method, d.target, u.via(randTag()), routes.String(), d.local, d.localTag, d.peer, d.remote, d.callID, d.cseq, contentType(body), body))
}

func contentType(body string) string {
	if body == "" {
		return "X-No-Body: 1"
	}
	return "Content-Type: application/sdp"
}

// okTo answers an incoming request 200.
func (u *ua) okTo(req sip.Message) {
	u.t.Helper()
	u.reply(sip.NewResponseFromRequest(req.(*sip.Request), 200, "OK", nil), "")
}
