package nat

import (
	"bytes"
	"strconv"
)

// Framing SIP on a byte stream (RFC 3261 §18.3): a message is its headers
// up to the blank line, then Content-Length bytes of body. What is not a
// SIP message — keepalive line ends (RFC 5626 §3.5.1), other protocols,
// a message too big to hold — passes through as it is.

const (
	maxHeader = 64 << 10 // headers longer than this pass unframed
	maxBody   = 1 << 20  // as do bodies longer than this
)

// nextFrame is the length of the frame at the start of buf and whether it
// is a whole SIP message; 0 means more bytes are needed (never when atEOF
// and buf is not empty).
func nextFrame(buf []byte, atEOF bool) (n int, isSIP bool) {
	if len(buf) == 0 {
		return 0, false
	}
	if k := len(buf) - len(bytes.TrimLeft(buf, "\r\n")); k > 0 {
		return k, false
	}
	more := func() (int, bool) {
		if atEOF || len(buf) >= maxHeader {
			return len(buf), false
		}
		return 0, false
	}
	nl := bytes.IndexByte(buf, '\n')
	if nl < 0 {
		if word, _, _ := bytes.Cut(buf, []byte(" ")); !isToken(word) && !bytes.HasPrefix(word, []byte("SIP/")) {
			return len(buf), false
		}
		return more()
	}
	if !looksSIP(buf[:nl+1]) {
		return nl + 1, false
	}
	start := bodyStart(buf)
	if start < 0 {
		return more()
	}
	length, ok := contentLength(buf[:start])
	if !ok {
		return start, false
	}
	if len(buf) < start+length {
		if atEOF {
			return len(buf), false
		}
		return 0, false
	}
	return start + length, true
}

// contentLength reads the Content-Length of head: 0 without one; ok false
// if it is not a number up to maxBody, or there are two that differ.
func contentLength(head []byte) (n int, ok bool) {
	n, ok = 0, true
	seen := false
	headerLines(head, func(_, _ int, name, value []byte) {
		if !isContentLength(name) {
			return
		}
		v, err := strconv.Atoi(string(bytes.TrimSpace(value)))
		if err != nil || v < 0 || v > maxBody || seen && v != n {
			ok = false
		}
		n, seen = v, true
	})
	return n, ok
}
