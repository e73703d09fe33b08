// Package ng speaks rtpengine's NG control protocol: bencoded dictionaries
// over UDP, each prefixed by a cookie that the reply echoes. It holds the
// codec, the server that exposes sipanchor's relay to Kamailio/OpenSIPS,
// and (later) the client that drives rtpengine nodes.
package ng

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// ErrBencode is wrapped by every decoding error.
var ErrBencode = errors.New("bad bencode")

// maxDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxDepth = 32

// Decode parses one bencoded value at the start of b (BEP 3: strings
// "4:spam", integers "i42e", lists "l…e", dictionaries "d…e") and returns
// it with the bytes after it. Values are string (any bytes), int64, []any
// and map[string]any. Dictionary keys are accepted in any order, as
// rtpengine and Kamailio send them unsorted; a repeated key is an error.
func Decode(b []byte) (any, []byte, error) {
	return decode(b, 0)
}

func decode(b []byte, depth int) (any, []byte, error) {
	if depth > maxDepth {
		return nil, nil, fmt.Errorf("%w: nested deeper than %d", ErrBencode, maxDepth)
	}
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: unexpected end", ErrBencode)
	}
	switch c := b[0]; {
	case c == 'i':
		end := slices.Index(b, 'e')
		if end < 0 {
			return nil, nil, fmt.Errorf("%w: unterminated integer", ErrBencode)
		}
		digits := string(b[1:end])
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || digits == "-0" || (len(digits) > 1 && (digits[0] == '0' || digits[:2] == "-0")) {
			return nil, nil, fmt.Errorf("%w: bad integer %q", ErrBencode, snippet(digits))
		}
		return n, b[end+1:], nil
	case c >= '0' && c <= '9':
		colon := slices.Index(b, ':')
		if colon < 0 {
			return nil, nil, fmt.Errorf("%w: string without ':'", ErrBencode)
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || (colon > 1 && b[0] == '0') {
			return nil, nil, fmt.Errorf("%w: bad string length %q", ErrBencode, snippet(string(b[:colon])))
		}
		rest := b[colon+1:]
		if n > len(rest) {
			return nil, nil, fmt.Errorf("%w: string of %d bytes, %d left", ErrBencode, n, len(rest))
		}
		return string(rest[:n]), rest[n:], nil
	case c == 'l':
		list := []any{}
		rest := b[1:]
		for {
			if len(rest) == 0 {
				return nil, nil, fmt.Errorf("%w: unterminated list", ErrBencode)
			}
			if rest[0] == 'e' {
				return list, rest[1:], nil
			}
			v, r, err := decode(rest, depth+1)
			if err != nil {
				return nil, nil, err
			}
			list = append(list, v)
			rest = r
		}
	case c == 'd':
		dict := map[string]any{}
		rest := b[1:]
		for {
			if len(rest) == 0 {
				return nil, nil, fmt.Errorf("%w: unterminated dictionary", ErrBencode)
			}
			if rest[0] == 'e' {
				return dict, rest[1:], nil
			}
			k, r, err := decode(rest, depth+1)
			if err != nil {
				return nil, nil, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, nil, fmt.Errorf("%w: dictionary key is not a string", ErrBencode)
			}
			if _, dup := dict[key]; dup {
				return nil, nil, fmt.Errorf("%w: key %q twice", ErrBencode, snippet(key))
			}
			v, r, err := decode(r, depth+1)
			if err != nil {
				return nil, nil, err
			}
			dict[key] = v
			rest = r
		}
	}
	return nil, nil, fmt.Errorf("%w: unexpected %q", ErrBencode, b[0])
}

// snippet is the start of s, for an error message: the error of a 64 KiB
// datagram must still fit in the reply datagram.
func snippet(s string) string {
	const n = 32
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Encode writes v as bencode. It takes string, []byte, the integer types,
// []any, []string, map[string]any and map[string]string; dictionary keys
// are written sorted (BEP 3).
func Encode(v any) ([]byte, error) {
	return appendValue(nil, v, 0)
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrBencode, maxDepth)
	}
	switch x := v.(type) {
	case string:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case []byte:
		return appendValue(dst, string(x), depth)
	case int:
		return appendInt(dst, int64(x)), nil
	case int64:
		return appendInt(dst, x), nil
	case uint64:
		return appendInt(dst, int64(x)), nil
	case uint32:
		return appendInt(dst, int64(x)), nil
	case int32:
		return appendInt(dst, int64(x)), nil
	case []string:
		dst = append(dst, 'l')
		for _, s := range x {
			dst, _ = appendValue(dst, s, depth+1)
		}
		return append(dst, 'e'), nil
	case []any:
		dst = append(dst, 'l')
		for _, e := range x {
			var err error
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, 'e'), nil
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return appendValue(dst, m, depth)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, 'd')
		for _, k := range keys {
			dst, _ = appendValue(dst, k, depth+1)
			var err error
			if dst, err = appendValue(dst, x[k], depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, 'e'), nil
	}
	return nil, fmt.Errorf("%w: cannot encode %T", ErrBencode, v)
}

func appendInt(dst []byte, n int64) []byte {
	dst = append(dst, 'i')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, 'e')
}

// ParseMessage splits an NG datagram into its cookie and dictionary.
func ParseMessage(b []byte) (cookie string, dict map[string]any, err error) {
	sp := slices.Index(b, ' ')
	if sp <= 0 {
		return "", nil, fmt.Errorf("%w: no cookie", ErrBencode)
	}
	cookie = string(b[:sp])
	v, rest, err := Decode(b[sp+1:])
	if err != nil {
		return cookie, nil, err
	}
	if len(rest) != 0 {
		return cookie, nil, fmt.Errorf("%w: %d bytes after the dictionary", ErrBencode, len(rest))
	}
	d, ok := v.(map[string]any)
	if !ok {
		return cookie, nil, fmt.Errorf("%w: message is not a dictionary", ErrBencode)
	}
	return cookie, d, nil
}

// Message builds an NG datagram: cookie, space, bencoded dictionary.
func Message(cookie string, dict map[string]any) ([]byte, error) {
	b, err := Encode(dict)
	if err != nil {
		return nil, err
	}
	return append([]byte(cookie+" "), b...), nil
}
