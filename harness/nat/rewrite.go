package nat

import (
	"bytes"
	"net/netip"
	"strconv"
)

// The text side of the box: SIP messages are rewritten so that an inside
// host sees the outside at its view addresses. The rewrite works on the
// bytes, as a router's ALG does, not through a SIP parser: it must pass
// what a parser would refuse, and change nothing else.

// looksSIP reports whether b starts with a SIP start line (RFC 3261 §7.1,
// §7.2): a Status-Line "SIP/2.0 …" or a Request-Line "Method SP
// Request-URI SP SIP/2.0".
func looksSIP(b []byte) bool {
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	const version = "SIP/2.0"
	if len(line) > len(version) && bytes.EqualFold(line[:len(version)], []byte(version)) && line[len(version)] == ' ' {
		return true
	}
	method, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(method) == 0 || !isToken(method) {
		return false
	}
	uri, ver, ok := bytes.Cut(rest, []byte(" "))
	return ok && len(uri) > 0 && bytes.EqualFold(ver, []byte(version))
}

// isToken reports whether b is an RFC 3261 §25.1 token.
func isToken(b []byte) bool {
	for _, c := range b {
		if !isAlnum(c) && bytes.IndexByte([]byte("-.!%*_+`'~"), c) < 0 {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// hostChar: a byte that can be part of a host name next to an address,
// so that "x127.0.0.1" or "127.0.0.1a" is not an IPv4 literal.
func hostChar(c byte) bool { return isAlnum(c) || c == '-' || c == '_' || c == '.' }

// eachIPv4 calls fn with the position and value of every whole IPv4
// literal in b: a run of digits and dots that parses as an IPv4 address,
// with no host-name character on either side ("127.0.0.1" is not found in
// "127.0.0.10").
func eachIPv4(b []byte, fn func(i, j int, a netip.Addr)) {
	for i := 0; i < len(b); i++ {
		if b[i] < '0' || b[i] > '9' || i > 0 && hostChar(b[i-1]) {
			continue
		}
		j := i
		for j < len(b) && (b[j] == '.' || '0' <= b[j] && b[j] <= '9') {
			j++
		}
		if j-i <= len("255.255.255.255") && (j == len(b) || !hostChar(b[j])) {
			if a, err := netip.ParseAddr(string(b[i:j])); err == nil && a.Is4() {
				fn(i, j, a)
			}
		}
		i = j
	}
}

// replaceIPs replaces each IPv4 literal a of b by repl(a) when repl says
// so. It returns b itself when nothing changed.
func replaceIPs(b []byte, repl func(netip.Addr) (netip.Addr, bool)) ([]byte, bool) {
	var out []byte
	last := 0
	eachIPv4(b, func(i, j int, a netip.Addr) {
		n, ok := repl(a)
		if !ok || n == a {
			return
		}
		if out == nil {
			out = make([]byte, 0, len(b)+16)
		}
		out = append(out, b[last:i]...)
		out = n.AppendTo(out)
		last = j
	})
	if out == nil {
		return b, false
	}
	return append(out, b[last:]...), true
}

// bodyStart is where msg's body starts, after the blank line that ends
// its headers (CRLF CRLF, or a bare LF LF), or -1.
func bodyStart(msg []byte) int {
	crlf, lf := bytes.Index(msg, []byte("\r\n\r\n")), bytes.Index(msg, []byte("\n\n"))
	switch {
	case crlf >= 0 && (lf < 0 || crlf < lf):
		return crlf + 4
	case lf >= 0:
		return lf + 2
	}
	return -1
}

// rewriteSIP applies repl to the IPv4 literals of a SIP message, headers
// and body, and when the body changed sets every Content-Length to its new
// length. Anything that does not look like SIP is returned as it was.
func rewriteSIP(msg []byte, repl func(netip.Addr) (netip.Addr, bool)) ([]byte, bool) {
	if !looksSIP(msg) {
		return msg, false
	}
	start := bodyStart(msg)
	if start < 0 {
		return replaceIPs(msg, repl)
	}
	head, headChanged := replaceIPs(msg[:start], repl)
	body, bodyChanged := replaceIPs(msg[start:], repl)
	if !headChanged && !bodyChanged {
		return msg, false
	}
	if bodyChanged {
		head = setContentLength(head, len(body))
	}
	out := make([]byte, 0, len(head)+len(body))
	return append(append(out, head...), body...), true
}

// headerLines calls fn with each header line of head (the start line and
// folded continuations excluded, CR removed): its bounds in head, and its
// name and value.
func headerLines(head []byte, fn func(start, end int, name, value []byte)) {
	pos := bytes.IndexByte(head, '\n') + 1
	if pos == 0 {
		return
	}
	for pos < len(head) {
		end := pos + bytes.IndexByte(head[pos:], '\n')
		if end < pos {
			end = len(head)
		}
		line := bytes.TrimSuffix(head[pos:end], []byte("\r"))
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && len(line) > 0 && line[0] != ' ' && line[0] != '\t' {
			fn(pos, pos+len(line), bytes.TrimSpace(name), value)
		}
		pos = end + 1
	}
}

// isContentLength: RFC 3261 §20.14, and its compact form "l" (§7.3.3).
func isContentLength(name []byte) bool {
	return bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("l"))
}

// setContentLength writes n as the value of every Content-Length header
// of head, keeping the white space before the value.
func setContentLength(head []byte, n int) []byte {
	var out []byte
	last := 0
	headerLines(head, func(start, end int, name, value []byte) {
		if !isContentLength(name) {
			return
		}
		valueAt := end - len(value)
		valueAt += len(value) - len(bytes.TrimLeft(value, " \t"))
		out = append(out, head[last:valueAt]...)
		out = strconv.AppendInt(out, int64(n), 10)
		last = end
	})
	if out == nil {
		return head
	}
	return append(out, head[last:]...)
}
