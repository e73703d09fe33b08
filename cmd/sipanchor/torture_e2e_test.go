package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// validTorture is a valid request from RFC 4475 that must be taken, never
// answered 400. Lines end in LF here and CRLF on the wire (rawPeer.fill);
// Content-Length is as written. Besides fill's {VIA} and {CALLID}: {TR}
// and {ADDR} are the sender's transport and host:port, {BRANCH} a fresh
// token, {CALLEE} the registered callee's host:port, {METHOD} intmeth's
// method.
type validTorture struct {
	name   string
	text   string
	ruri   string // the Request-URI, for the ACK of an INVITE
	callee int    // the callee's answer when the request must reach it; 0 = it must not
	sees   string // what the callee must find in the request it gets
	status int    // the final answer the sender must get
	has    string // what that answer must hold
	via    string // the top Via that answer must carry, as sent but for LWS; "" = not checked
}

// intmethMethod is RFC 4475 §3.1.1.2's method: methods are case-sensitive
// tokens (RFC 3261 §7.1) and must pass through as written.
const intmethMethod = "!interesting-Method0123456789_*+`.%indeed'~"

// wsinvBody is wsinv's SDP, 150 bytes as its Content-Length says.
const wsinvBody = "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\n" +
	"m=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"

// wsinv is RFC 4475 §3.1.1.1 with topVia on top, routed to the callee:
// LWS everywhere the grammar allows it, folded lines, odd header case.
func wsinv(topVia string) string {
	return `INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: {CALLID}.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
` + topVia + `
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:{CALLEE};lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

` + wsinvBody
}

// intmeth is RFC 4475 §3.1.1.2 sent to ruri (the control characters in
// To's quoted pairs and the UTF-8 are the RFC's).
func intmeth(ruri string) string {
	return `{METHOD} ` + ruri + ` SIP/2.0
Via: SIP/2.0/{TR} {ADDR};branch=z9hG4bK-.!%66*_+` + "`" + `'~{BRANCH}
To: "BEL:\` + "\x07" + ` NUL:\` + "\x00" + ` DEL:\` + "\x7f" + `" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.test>
From: token1~` + "`" + ` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="работающий";tag=_token~1'+` + "`" + `*%!-.
Call-ID: {CALLID}.word%ZK-!.*_+'@word` + "`" + `~)(><:\/"][?}{
CSeq: 139122385 {METHOD}
Max-Forwards: 255
extensionHeader-!.%*+_` + "`" + `'~:` + "\xef\xbb\xbf大停電" + `
Content-Length: 0

`
}

// longreq is RFC 4475 §3.1.1.7 to an unknown user, with the sender's
// branchless Via on top of its 33 others (the last with a non-RFC 3261
// branch).
func longreq() string {
	long := strings.Repeat
	var vias strings.Builder
	for i, name := range []string{"v", "V", "Via", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA", "V ", "v ", "V  ", "v  ", "Via ", "Via  "} {
		fmt.Fprintf(&vias, "%s: SIP/2.0/TCP sip%d.example.com\n", name, 32-i)
	}
	for i := 16; i >= 1; i-- {
		fmt.Fprintf(&vias, "Via: SIP/2.0/TCP sip%d.example.com\n", i)
	}
	return `INVITE sip:user@example.test SIP/2.0
To: "I have a user name of ` + long("extreme", 10) + ` proportion"<sip:user@example.test:6000;unknownparam1=very` + long("long", 20) + `value;longparam` + long("name", 25) + `=shortvalue;very` + long("long", 25) + `ParameterNameWithNoValue>
F: sip:` + long("amazinglylongcallername", 5) + `@example.net;tag=12` + long("982", 50) + `424;unknownheaderparam` + long("name", 20) + `=unknowheaderparam` + long("value", 15) + `;unknownValueless` + long("paramname", 10) + `
Call-ID: {CALLID}.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid
CSeq: 3882340 INVITE
Unknown-` + long("Long", 20) + `-Name: unknown-` + long("long", 20) + `-value; unknown-` + long("long", 20) + `-parameter-name = unknown-` + long("long", 20) + `-parameter-value
Via: SIP/2.0/{TR} {ADDR}
` + vias.String() + `Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very` + long("long", 50) + `branchvalue
Max-Forwards: 70
Contact: <sip:` + long("amazinglylongcallername", 5) + `@host5.example.net>
Content-Type: application/sdp
l: 150

` + wsinvBody
}

func validTortures() []validTorture {
	return []validTorture{
		{name: "wsinv §3.1.1.1", ruri: "sip:vivekg@chair-dnrc.example.com;unknownparam",
			text:   wsinv("Via  : SIP  /   2.0\n /{TR}\n    {ADDR};branch=390skdjuw"),
			callee: 481, sees: ";tag=98asjd8", status: 481, via: "Via: SIP/2.0/{TR} {ADDR};branch=390skdjuw"},
		{name: "wsinv, LWS in the branch", ruri: "sip:vivekg@chair-dnrc.example.com;unknownparam",
			text:   wsinv("Via  : SIP  /   2.0\n /{TR}\n    {ADDR} ;  branch = z9hG4bK{BRANCH}"),
			callee: 481, sees: ";tag=98asjd8", status: 481, via: "Via: SIP/2.0/{TR} {ADDR};branch=z9hG4bK{BRANCH}"},
		{name: "intmeth §3.1.1.2", text: intmeth("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.test"),
			status: 404, via: "Via: SIP/2.0/{TR} {ADDR};branch=z9hG4bK-.!%66*_+`'~{BRANCH}"},
		{name: "intmeth to a registered user", text: intmeth("sip:bob@example.test"),
			callee: 405, sees: intmethMethod + " sip:bob@", status: 405},
		{name: "REGISTER with LWS as in wsinv", text: `REGISTER sip:example.test SIP/2.0
Via: SIP/2.0/{TR} {ADDR} ; branch = z9hG4bK{BRANCH}
Max-Forwards: 70
From: <sip:carol@example.test> ; tag = r{BRANCH}
To: <sip:carol@example.test>
Call-ID: {CALLID}.reg
CSeq: 1 REGISTER
Contact: <sip:carol@{ADDR}> ; expires = 60
Content-Length: 0

`, status: 200, has: ";expires=60", via: "Via: SIP/2.0/{TR} {ADDR};branch=z9hG4bK{BRANCH}"},
		{name: "longreq §3.1.1.7", ruri: "sip:user@example.test", text: longreq(),
			status: 404, via: "Via: SIP/2.0/{TR} {ADDR}"},
	}
}

// TestValidTortureNot400 sends RFC 4475's valid messages that an earlier
// sipanchor refused with 400 — LWS around "=" (wsinv, and a REGISTER
// written the same way), an extension
// method in mixed case (intmeth), a top Via without a branch (longreq,
// inv2543) — over UDP and TCP from a raw socket. Each gets the answer the
// RFC expects of a proxy, with the sender's Via as sent, and the proxy
// answers OPTIONS after each. The branchless INVITE is matched as RFC 3261
// §17.2.3 asks for RFC 2543 requests: its retransmissions and its ACK are
// absorbed by its transaction, not forwarded again.
func TestValidTortureNot400(t *testing.T) {
	p := startProxy(t, "")
	bob := newRawPeer(t, "udp", p)
	registerRaw(t, bob, "bob")
	for _, tr := range []string{"udp", "tcp"} {
		for i, vc := range validTortures() {
			t.Run(tr+"/"+vc.name, func(t *testing.T) {
				r := newRawPeer(t, tr, p)
				callID := fmt.Sprintf("torture-%s-%d", tr, i)
				sub := strings.NewReplacer("{TR}", r.transport(), "{ADDR}", r.local(), "{BRANCH}", callID,
					"{CALLEE}", bob.local(), "{METHOD}", intmethMethod)
				r.send(r.fill(sub.Replace(vc.text), callID, callID))
				if vc.callee != 0 {
					got, ok := (&inbox{r: bob, callID: callID}).next(5 * time.Second)
					if !ok {
						t.Fatalf("callee got nothing; the sender got %q", statusLine(finalFor(t, r, callID)))
					}
					if !strings.Contains(got, vc.sees) {
						t.Errorf("callee got no %q:\n%s", vc.sees, got)
					}
					answerRaw(t, bob, got, vc.callee)
				}
				res := finalFor(t, r, callID)
				if got := statusLine(res); !strings.HasPrefix(got, "SIP/2.0 "+strconv.Itoa(vc.status)+" ") {
					t.Fatalf("got %q, want %d\n%s", got, vc.status, res)
				}
				if !strings.Contains(res, vc.has) {
					t.Errorf("answer lacks %q:\n%s", vc.has, res)
				}
				if want := sub.Replace(vc.via); vc.via != "" && firstVia(res) != want {
					t.Errorf("answer's top Via %q, want %q", firstVia(res), want)
				}
				if vc.ruri != "" {
					r.send(ackFor(vc.ruri, res))
				}
				optionsAfter(t, r, p, callID)
			})
		}
		t.Run(tr+"/inv2543 §3.4.1, retransmitted", func(t *testing.T) { inv2543Retransmitted(t, p, tr, bob) })
	}
	if !p.alive() {
		t.Fatal("proxy died")
	}
}

// inv2543 is RFC 4475 §3.4.1, an RFC 2543 INVITE (no branch, no From tag,
// no Max-Forwards), to the registered bob.
const inv2543 = `INVITE sip:bob@example.test SIP/2.0
Via: SIP/2.0/{TR} {ADDR}
From: <sip:+13035551111@ift.client.example.net;user=phone>
Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>
To: sip:+16505552222@ss1.example.net;user=phone
Call-ID: {CALLID}@ift.client.example.com
CSeq: 56 INVITE
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0
`

// inv2543Retransmitted: the INVITE reaches bob once, however often the
// caller sends it; over UDP the final answer is sent again for a
// retransmission (same To tag); it carries the caller's Via as sent; the
// ACK is not forwarded (bob gets only the proxy's own ACK of its 486).
func inv2543Retransmitted(t *testing.T, p *proxy, tr string, bob *rawPeer) {
	r := newRawPeer(t, tr, p)
	callID := "inv2543-" + tr
	via := "Via: SIP/2.0/" + r.transport() + " " + r.local()
	msg := r.fill(strings.NewReplacer("{TR}", r.transport(), "{ADDR}", r.local()).Replace(inv2543), callID, callID)
	if tr == "tcp" {
		msg = []byte(crlf(string(msg))) // a stream needs a Content-Length (RFC 3261 §18.3)
	}
	in := &inbox{r: bob, callID: callID}
	r.send(msg)
	inv, ok := in.next(5 * time.Second)
	if !ok {
		t.Fatalf("callee got nothing; the caller got %q", statusLine(finalFor(t, r, callID)))
	}
	if tr == "udp" {
		// A retransmission before the answer. Not over TCP: nothing is
		// sent twice there (RFC 3261 §17.1.1.2), and sipgo ends a TCP
		// transaction at its final response, so a copy still in flight
		// then would race that end and be taken as a new request.
		r.send(msg)
	}
	answerRaw(t, bob, inv, 486)
	first := finalFor(t, r, callID)
	if !strings.HasPrefix(statusLine(first), "SIP/2.0 486 ") {
		t.Fatalf("got %q, want 486\n%s", statusLine(first), first)
	}
	if firstVia(first) != via {
		t.Errorf("answer's top Via %q, want %q as sent", firstVia(first), via)
	}
	if tr == "udp" {
		// Over TCP nothing is sent twice (RFC 3261 §17.1.1.2) and sipgo
		// ends the transaction with its final response.
		r.send(msg) // as if the 486 was lost
		again := finalFor(t, r, callID)
		if statusLine(again) != statusLine(first) || header(again, "To") != header(first, "To") {
			t.Errorf("retransmission answered %q %q, want %q %q", statusLine(again), header(again, "To"), statusLine(first), header(first, "To"))
		}
	}
	r.send(ackFor("sip:bob@example.test", first))
	if ack := in.await(t); !strings.HasPrefix(ack, "ACK ") {
		t.Fatalf("bob got another %q, want only the proxy's ACK:\n%s", statusLine(ack), ack)
	}
	if extra, ok := in.next(time.Second); ok {
		t.Errorf("bob got a request more:\n%s", extra)
	}
	optionsAfter(t, r, p, callID)
}

// registerRaw registers a raw UDP peer as user@example.test at its address.
func registerRaw(t *testing.T, r *rawPeer, user string) {
	t.Helper()
	r.send(r.fill(fmt.Sprintf(`REGISTER sip:example.test SIP/2.0
{VIA}
Max-Forwards: 70
From: <sip:%[1]s@example.test>;tag=reg%[1]s
To: <sip:%[1]s@example.test>
Call-ID: {CALLID}
CSeq: 1 REGISTER
Contact: <sip:%[1]s@%[2]s>
Expires: 600
Content-Length: 0

`, user, r.local()), "reg"+user, "reg-"+user))
	res := finalFor(t, r, "reg-"+user)
	if !strings.HasPrefix(statusLine(res), "SIP/2.0 200 ") {
		t.Fatalf("REGISTER %s: %q", user, statusLine(res))
	}
}

// inbox is what a raw callee gets for one call, less the proxy's own
// retransmissions (the request line and top Via of one seen before).
type inbox struct {
	r      *rawPeer
	callID string
	seen   map[string]bool
}

// next is the call's next new request within timeout.
func (b *inbox) next(timeout time.Duration) (string, bool) {
	if b.seen == nil {
		b.seen = map[string]bool{}
	}
	deadline := time.Now().Add(timeout)
	for {
		msg, err := b.r.read(deadline)
		if err != nil {
			return "", false
		}
		key := statusLine(msg) + "|" + firstVia(msg)
		if strings.HasPrefix(msg, "SIP/") || !isCall(msg, b.callID) || b.seen[key] {
			continue
		}
		b.seen[key] = true
		return msg, true
	}
}

func (b *inbox) await(t *testing.T) string {
	t.Helper()
	msg, ok := b.next(5 * time.Second)
	if !ok {
		t.Fatalf("callee got no request of %s", b.callID)
	}
	return msg
}

// answerRaw answers a request a raw peer got, through the proxy.
func answerRaw(t *testing.T, r *rawPeer, text string, code int) {
	t.Helper()
	m, err := sip.ParseMessage([]byte(text))
	if err != nil {
		t.Fatalf("callee cannot parse what it got: %v\n%s", err, text)
	}
	req := m.(*sip.Request)
	reasons := map[int]string{405: "Method Not Allowed", 481: "Call/Transaction Does Not Exist", 486: "Busy Here"}
	res := sip.NewResponseFromRequest(req, code, reasons[code], nil)
	if !res.To().Params.Has("tag") {
		res.To().Params.Add("tag", "callee"+strconv.Itoa(code))
	}
	if code == 405 {
		res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"))
	}
	head, _, _ := strings.Cut(res.String(), "\r\n\r\n")
	r.send([]byte(crlf(head + "\n\n")))
}

// finalFor is the next final response of the call, others skipped.
func finalFor(t *testing.T, r *rawPeer, callID string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg, err := r.next(time.Until(deadline))
		if err != nil {
			t.Fatalf("no final response of %s: %v", callID, err)
		}
		if strings.HasPrefix(msg, "SIP/") && isCall(msg, callID) {
			return msg
		}
	}
}

// isCall: msg's Call-ID is callID, or callID followed by "." or "@".
func isCall(msg, callID string) bool {
	h := header(msg, "Call-ID")
	return h == callID || strings.HasPrefix(h, callID+".") || strings.HasPrefix(h, callID+"@")
}

// header is the value of msg's first header line called name, as sipgo
// writes it ("" if none).
func header(msg, name string) string {
	for _, l := range strings.Split(msg, "\r\n")[1:] {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
	}
	return ""
}

// firstVia is msg's first Via line.
func firstVia(msg string) string { return "Via: " + header(msg, "Via") }

// ackFor is the ACK of a non-2xx final response to an INVITE sent to ruri
// (RFC 3261 §17.1.1.3): the INVITE's Via, From, Call-ID and CSeq number,
// the response's To.
func ackFor(ruri, res string) []byte {
	num, _, _ := strings.Cut(header(res, "CSeq"), " ")
	return []byte(fmt.Sprintf("ACK %s SIP/2.0\r\n%s\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s ACK\r\nContent-Length: 0\r\n\r\n",
		ruri, firstVia(res), header(res, "From"), header(res, "To"), header(res, "Call-ID"), num))
}

// optionsAfter checks the proxy still answers: an OPTIONS to it gets 200.
func optionsAfter(t *testing.T, r *rawPeer, p *proxy, callID string) {
	t.Helper()
	r.send(r.fill(optionsToProxy(p), callID+"ok", callID+"-ok"))
	if res := finalFor(t, r, callID+"-ok"); !strings.HasPrefix(statusLine(res), "SIP/2.0 200 ") {
		t.Errorf("OPTIONS after: %q", statusLine(res))
	}
}
