package nat

import (
	"strings"
	"testing"
)

func TestNextFrame(t *testing.T) {
	invite := "INVITE sip:b@h SIP/2.0\r\nContent-Length: 3\r\n\r\nabc"
	cases := []struct {
		name  string
		buf   string
		atEOF bool
		n     int
		isSIP bool
	}{
		{"keepalive", "\r\n\r\nINVITE", false, 4, false},
		{"whole message, more after", invite + "SIP/2.0 200", false, len(invite), true},
		{"body not all there", invite[:len(invite)-1], false, 0, false},
		{"body not all there at EOF", invite[:len(invite)-1], true, len(invite) - 1, false},
		{"headers not all there", "INVITE sip:b@h SIP/2.0\r\nVia: x", false, 0, false},
		{"start line not all there", "INVI", false, 0, false},
		{"binary", "\x80\x00\x01", false, 3, false},
		{"not SIP, a line at a time", "GET / HTTP/1.1\r\nHost: x\r\n", false, 16, false},
		{"no content-length", "OPTIONS sip:h SIP/2.0\r\n\r\nXY", false, 25, true},
		{"bad content-length passes the headers", "OPTIONS sip:h SIP/2.0\r\nl: -1\r\n\r\nXY", false, 32, false},
		{"two different content-lengths", "OPTIONS sip:h SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nXY", false, 50, false},
		{"headers too long", "OPTIONS sip:h SIP/2.0\r\nX: " + strings.Repeat("a", maxHeader), false, maxHeader + 26, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, isSIP := nextFrame([]byte(tc.buf), tc.atEOF)
			if n != tc.n || isSIP != tc.isSIP {
				t.Errorf("nextFrame = %d, %v; want %d, %v", n, isSIP, tc.n, tc.isSIP)
			}
		})
	}
}
