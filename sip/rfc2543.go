package sip

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// RFC 2543 transactions (RFC 3261 §17.2.3). A request whose top Via has
// no branch beginning with the magic cookie comes from an RFC 2543
// element (RFC 4475 §3.1.1.7 longreq, §3.4.1 inv2543). Its transaction is
// the requests with the same Request-URI, From tag, Call-ID, CSeq number
// and top Via sent-by; here the method and the To tag are left out so
// that the request's CANCEL and the ACK of a non-2xx answer (whose To tag
// is ours) match it too, as §17.2.3 asks. sipgo matches such a request on
// From tag, Call-ID, CSeq and the whole Via instead, refuses it with 400
// when the From has no tag (optional in RFC 2543), and would take the ACK
// of a 2xx as the INVITE's; the rest of sipanchor keys on a branch.
//
// So screen gives the top Via a branch made from those fields: the same
// for every retransmission, ACK and CANCEL of the request, and carrying
// the branch parameter the Via had, if any, as written. sipgo matches on
// it like on any RFC 3261 branch. Responses leave through restoreVia
// (restoringPacketConn, screenConn.Write), which puts the branch back.
// A request forwarded downstream keeps the made branch in its second Via.

// rfc2543Prefix starts the branches keyRFC2543 makes: a 16-digit hash of
// the transaction's fields, then "." and the base64 of the branch
// parameter the Via had, as written, if it had one.
const rfc2543Prefix = sip.RFC3261BranchMagicCookie + "2543."

const rfc2543HashLen = 16

// keyRFC2543 gives a request from an RFC 2543 client (parsed from msg,
// whose LWS is normalised) its transaction branch, returning msg with the
// top Via's branch parameter replaced, or added at its end. msg is
// returned as it is for an RFC 3261 request, and when sipgo would not read
// the new Via as written (it then matches the request its own way).
func keyRFC2543(msg []byte, req *sip.Request) []byte {
	v := req.Via()
	if b, _ := v.Params.Get("branch"); strings.HasPrefix(b, sip.RFC3261BranchMagicCookie) && len(b) > len(sip.RFC3261BranchMagicCookie) {
		return msg
	}
	top, ok := findTopVia(msg)
	if !ok || strings.ContainsAny(top.value, "\r\n") {
		// A line break left inside the value (folding was undone before)
		// is a bare CR or LF: where sipgo and this code see the Via end
		// differs, and the response's Via could not be put back.
		return msg
	}
	old := top.param()
	fromTag, _ := req.From().Params.Get("tag")
	sum := sha256.New()
	for _, f := range []string{req.Recipient.String(), fromTag, callID(req), strconv.FormatUint(uint64(req.CSeq().SeqNo), 10),
		strings.ToUpper(v.Transport), strings.ToLower(v.Host), strconv.Itoa(v.Port), old} {
		sum.Write([]byte(f))
		sum.Write([]byte{0})
	}
	branch := rfc2543Prefix + hex.EncodeToString(sum.Sum(nil))[:rfc2543HashLen]
	param := ";branch=" + branch // added at the end
	if strings.HasSuffix(top.value, ";") {
		param = param[1:]
	}
	if top.had {
		branch += "." + base64.RawURLEncoding.EncodeToString([]byte(old))
		param = "branch=" + branch // in place of the old one
	}
	value := top.with(param)
	hs, err := headerParsers.ParseHeader(nil, []byte("Via: "+value))
	if err != nil || len(hs) != 1 {
		return msg
	}
	nv, ok := hs[0].(*sip.ViaHeader)
	if !ok || nv.Params.GetOr("branch", "") != branch || nv.Host != v.Host || nv.Port != v.Port {
		return msg
	}
	// A response's Via is sipgo's writing of the parsed one, and
	// restoreVia takes the made branch out of it: that must give back the
	// UA's own Via, or the request is left alone.
	if !restoresTo(nv, v) {
		return msg
	}
	// And the message must still parse whole (a Via split by a bare LF
	// took the branch onto a line of its own).
	out := splice(msg, top.h, "Via: "+value)
	if _, err := sip.ParseMessage(out); err != nil {
		return msg
	}
	return out
}

// restoresTo reports whether a response carrying keyed (sipgo's writing
// of it), once restoreVia has run, has the top Via orig: its sent-by,
// transport and branch parameter as the UA wrote them.
func restoresTo(keyed, orig *sip.ViaHeader) bool {
	probe := restoreVia([]byte("SIP/2.0 100 Trying\r\nVia: " + keyed.Value() + "\r\n\r\n"))
	top, ok := findTopVia(probe)
	if !ok {
		return false
	}
	hs, err := headerParsers.ParseHeader(nil, []byte("Via: "+top.value))
	if err != nil || len(hs) != 1 {
		return false
	}
	back, ok := hs[0].(*sip.ViaHeader)
	if !ok || back.Host != orig.Host || back.Port != orig.Port || back.Transport != orig.Transport {
		return false
	}
	ob, oh := orig.Params.Get("branch")
	bb, bh := back.Params.Get("branch")
	return ob == bb && oh == bh
}

// restoreVia undoes keyRFC2543 in a response about to be sent: the top
// Via gets its branch parameter back as it was written, or none. Anything
// else is returned as it is.
func restoreVia(msg []byte) []byte {
	if !bytes.HasPrefix(msg, []byte("SIP/2.0 ")) || !bytes.Contains(msg, []byte(rfc2543Prefix)) {
		return msg
	}
	top, ok := findTopVia(msg)
	if !ok || !top.had {
		return msg
	}
	rest, ok := strings.CutPrefix(top.param(), "branch="+rfc2543Prefix)
	if !ok || len(rest) < rfc2543HashLen {
		return msg
	}
	switch rest = rest[rfc2543HashLen:]; {
	case rest == "":
		top.from-- // and its ";"
		return splice(msg, top.h, "Via: "+top.with(""))
	case rest[0] == '.':
		old, err := base64.RawURLEncoding.DecodeString(rest[1:])
		if err != nil {
			return msg
		}
		return splice(msg, top.h, "Via: "+top.with(string(old)))
	}
	return msg
}

// topVia is a message's first Via header: where it is, its value, and
// where in that its first branch parameter ("branch=...") is (if it has
// none, from and to are the value's end).
type topVia struct {
	h        headerSpan
	value    string
	from, to int
	had      bool
}

func findTopVia(msg []byte) (topVia, bool) {
	var top topVia
	found := false
	eachHeader(msg, func(h headerSpan) bool {
		if h.colon < 0 {
			return true
		}
		if via, ok := lwsKind(h.name(msg)); !via || !ok {
			return true
		}
		top.h, found = h, true
		top.value = string(bytes.Trim(msg[h.colon+1:h.end], " \t"))
		top.from, top.to, top.had = branchParam(top.value)
		if !top.had {
			top.from, top.to = len(top.value), len(top.value)
		}
		return false
	})
	return top, found
}

// param is the branch parameter as written, "" when there is none.
func (t topVia) param() string { return t.value[t.from:t.to] }

// with is the value with the branch parameter's place taken by s.
func (t topVia) with(s string) string { return t.value[:t.from] + s + t.value[t.to:] }

// branchParam finds the first branch parameter of the first value of a
// Via header, read as sipgo reads it (a quoted string starts a
// parameter's value and ends at the next quote): from and to span it
// ("branch=..."), had says whether there is one (if not, from and to are
// 0).
func branchParam(v string) (from, to int, had bool) {
	start := -1 // of the parameter being read, after its ";"
	inValue, quoted := false, false
	for i := 0; i <= len(v); i++ {
		c := byte(';')
		if i < len(v) {
			c = v[i]
		}
		switch {
		case quoted:
			quoted = c != '"'
			continue
		case c == '"' && inValue:
			quoted = true
			continue
		case c == '=' && start >= 0:
			inValue = true
			continue
		case c != ';' && (c != ',' || start < 0):
			continue // sipgo looks for commas among the parameters only
		}
		if start >= 0 {
			if key, _, _ := strings.Cut(v[start:i], "="); key == "branch" {
				return start, i, true
			}
		}
		if i == len(v) || c == ',' {
			return 0, 0, false
		}
		start, inValue = i+1, false
	}
	return 0, 0, false
}

// splice replaces header h of msg with line.
func splice(msg []byte, h headerSpan, line string) []byte {
	out := make([]byte, 0, len(msg)+len(line))
	out = append(out, msg[:h.start]...)
	out = append(out, line...)
	return append(out, msg[h.end:]...)
}

// restoringPacketConn is a UDP listener as sipgo sees it: what sipgo
// writes through it passes restoreVia.
type restoringPacketConn struct {
	net.PacketConn
}

func (c restoringPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if _, err := c.PacketConn.WriteTo(restoreVia(b), addr); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Write is sipgo writing to an accepted TCP connection: responses pass
// restoreVia.
func (c *screenConn) Write(b []byte) (int, error) {
	if err := c.write(restoreVia(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
