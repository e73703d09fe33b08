package sip

import (
	"bytes"
)

// Linear white space in header fields (RFC 3261 §7.3.1, §25.1: SEMI,
// EQUAL, COMMA, SLASH and COLON are SWS-delimited). sipgo's parser keeps
// it in parameter names and values — `; tag = 98asjd8` becomes a param
// " tag " = " 98asjd8", `/ TCP host` loses its transport — so a From tag,
// a Via branch or sent-protocol written with LWS (RFC 4475 §3.1.1.1,
// wsinv) is lost and the request cannot be matched. normalizeLWS rewrites
// the headers that carry addresses and matching state with that LWS
// removed, before sipgo parses them; quoted strings and <URIs> stay as
// they are (LWS inside a URI is an error, RFC 4475 §3.1.2.6 badaspec).

// lwsHeaders are the headers normalizeLWS rewrites, by lower-case name
// (compact forms, RFC 3261 §7.3.3); true for Via, whose sent-by may have
// LWS around its colon and whose values each get a line.
var lwsHeaders = map[string]bool{
	"via": true, "v": true,
	"from": false, "f": false, "to": false, "t": false,
	"contact": false, "m": false, "route": false, "record-route": false,
}

// lwsKind looks name up in lwsHeaders without allocating.
func lwsKind(name []byte) (via, ok bool) {
	var lower [len("record-route")]byte
	if len(name) > len(lower) {
		return false, false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	via, ok = lwsHeaders[string(lower[:len(name)])]
	return via, ok
}

// headerSpan is one header field of a message: its bytes from the name to
// the end of its last continuation line, line end excluded.
type headerSpan struct {
	start, colon, end int // colon: -1 when the line has none
	folded            bool
}

// eachHeader calls f with msg's header fields, cut as sipgo cuts them
// (lines end in CRLF; a line starting with SP or HTAB continues the one
// before), until f returns false or the empty line that ends them; it
// reports whether that line was there.
func eachHeader(msg []byte, f func(headerSpan) bool) bool {
	pos := 0
	for bytes.HasPrefix(msg[pos:], []byte("\r\n")) {
		pos += 2 // RFC 3261 §7.5: CRLFs before the start line
	}
	i := bytes.Index(msg[pos:], []byte("\r\n"))
	if i < 0 {
		return false
	}
	pos += i + 2 // the start line
	cur := headerSpan{start: -1}
	for {
		i := bytes.Index(msg[pos:], []byte("\r\n"))
		if i < 0 {
			return false
		}
		line := msg[pos : pos+i]
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && cur.start >= 0 {
			cur.end, cur.folded = pos+i, true
			pos += i + 2
			continue
		}
		if cur.start >= 0 && !f(cur) {
			return false
		}
		if len(line) == 0 {
			return true
		}
		cur = headerSpan{start: pos, colon: bytes.IndexByte(line, ':'), end: pos + i}
		if cur.colon >= 0 {
			cur.colon += pos
		}
		pos += i + 2
	}
}

// name is the header's name as sipgo reads it: without white space
// around it.
func (h headerSpan) name(msg []byte) []byte {
	return bytes.TrimSpace(msg[h.start:h.colon])
}

// normalizeLWS returns msg with the LWS of its lwsHeaders removed where
// the grammar allows it and each Via value on a line of its own, or msg
// itself when there was nothing to change.
func normalizeLWS(msg []byte) []byte {
	var out []byte
	var buf [512]byte
	clean := buf[:0]
	done := 0 // msg is copied to out up to here
	ended := eachHeader(msg, func(h headerSpan) bool {
		if h.colon < 0 {
			return true
		}
		via, ok := lwsKind(h.name(msg))
		raw := msg[h.colon+1 : h.end]
		if !ok || bareCRLF(raw) {
			return true // sipgo refuses a bare CR or LF, so do we
		}
		clean = cleanLWS(clean[:0], raw, via)
		split := via && bytes.IndexByte(clean, ',') >= 0
		if !h.folded && !split && bytes.Equal(clean, bytes.Trim(raw, " \t")) {
			return true
		}
		out = append(out, msg[done:h.start]...)
		name := h.name(msg)
		for i, value := range splitVias(clean, split) {
			if i > 0 {
				out = append(out, "\r\n"...)
			}
			out = append(append(append(out, name...), ": "...), value...)
		}
		done = h.end
		return true
	})
	if out == nil || !ended {
		return msg
	}
	return append(out, msg[done:]...)
}

// bareCRLF: raw has a CR or LF that is not part of a CRLF.
func bareCRLF(raw []byte) bool {
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') || c == '\r' && (i+1 == len(raw) || raw[i+1] != '\n') {
			return true
		}
	}
	return false
}

// splitVias cuts a Via header's value into its via-parms at the commas
// outside quoted strings, each to have a line of its own (RFC 3261
// §7.3.1): sipgo's parser loses a sent-by followed by a comma.
func splitVias(v []byte, split bool) [][]byte {
	if !split {
		return [][]byte{v}
	}
	var out [][]byte
	quoted, start := false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// cleanLWS appends v to dst with the white space (folds included) next to
// a separator (; = , / and, in a Via, :) removed and other runs shortened
// to one space; quoted strings and <URIs> keep theirs, less the line ends
// of folds.
func cleanLWS(dst, v []byte, via bool) []byte {
	sep := func(c byte) bool {
		return c == ';' || c == '=' || c == ',' || c == '/' || via && c == ':'
	}
	var last byte // the last byte written outside a quoted string or <URI>
	space, quoted, angle := false, false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\r' || c == '\n':
			space = space || !quoted && !angle
			continue
		case quoted:
			dst = append(dst, c)
			if c == '\\' && i+1 < len(v) && v[i+1] != '\r' {
				i++
				dst = append(dst, v[i])
			} else if c == '"' {
				quoted = false
			}
			continue
		case angle:
			dst = append(dst, c)
			angle = c != '>'
			continue
		case c == ' ' || c == '\t':
			space = true
			continue
		}
		if space && len(dst) > 0 && !sep(last) && !sep(c) {
			dst = append(dst, ' ')
		}
		space, last = false, c
		dst = append(dst, c)
		quoted = c == '"'
		angle = c == '<' && !via
	}
	return dst
}
