package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestMalformedInput throws broken messages at the running proxy: nothing
// may crash or stall it, what can be answered gets 400, and a normal call
// works right after.
func TestMalformedInput(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "192.168.1.50")
	bob.register(600)

	good := func(callID, extra string) string {
		return fmt.Sprintf("OPTIONS sip:bob@example.test SIP/2.0\r\n%s\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n%s",
			alice.via(randTag()), callID, extra)
	}
	raw := func(b []byte) {
		a, _ := net.ResolveUDPAddr("udp", alice.proxy)
		if _, err := alice.pc.WriteTo(b, a); err != nil {
			t.Fatal(err)
		}
	}
	junk := make([]byte, 1200)
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	big := good("big-1", "X-Big: "+strings.Repeat("a", 64000)+"\r\nContent-Length: 0\r\n\r\n")

	tests := []struct {
		name   string
		data   []byte
		answer int // 0: dropped without answer
	}{
		{"binary junk", junk, 0},
		{"truncated start line", []byte("INVITE sip:bob@exa"), 0},
		{"truncated headers", []byte(good("trunc-1", "")[:90]), 0},
		{"64 KiB header", []byte(big), 0},
		{"Content-Length too long", []byte(good("cl-1", "Content-Length: 500\r\n\r\nv=0\r\n")), 400},
		{"missing Call-ID", []byte(strings.Replace(good("x", "Content-Length: 0\r\n\r\n"), "Call-ID: x\r\n", "", 1)), 400},
		{"missing From", []byte(strings.Replace(good("nofrom-1", "Content-Length: 0\r\n\r\n"), "From: <sip:alice@example.test>;tag=1\r\n", "", 1)), 400},
		{"missing Via", []byte("OPTIONS sip:bob@example.test SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\nCall-ID: novia-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"), 0},
		{"bad CSeq", []byte(strings.Replace(good("cseq-2", "Content-Length: 0\r\n\r\n"), "CSeq: 1 OPTIONS", "CSeq: one OPTIONS", 1)), 0},
		{"method mismatch", []byte(strings.Replace(good("cseq-3", "Content-Length: 0\r\n\r\n"), "CSeq: 1 OPTIONS", "CSeq: 1 INVITE", 1)), 400},
		{"empty", []byte{}, 0},
		{"only CRLF", []byte("\r\n\r\n"), 0},
		{"bad request line", []byte("OPTIONS SIP/2.0\r\n\r\n"), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw(tc.data)
			if tc.answer != 0 {
				res := alice.recv("400", func(m sip.Message) bool {
					r, ok := m.(*sip.Response)
					return ok && r.StatusCode >= 200
				}).(*sip.Response)
				if res.StatusCode != tc.answer {
					t.Errorf("got %d %s, want %d", res.StatusCode, res.Reason, tc.answer)
				}
			} else {
				alice.quiet("response", 150*time.Millisecond, func(m sip.Message) bool {
					r, ok := m.(*sip.Response)
					return ok && r.StatusCode >= 200 && r.StatusCode != 400
				})
			}
			if !p.alive() {
				t.Fatal("proxy died")
			}
		})
	}

	// The same over TCP: a header past 64 KiB and binary junk close that
	// connection only.
	for _, data := range [][]byte{[]byte(good("tcpbig", "X-Big: "+strings.Repeat("b", 70000)+"\r\nContent-Length: 0\r\n\r\n")), junk} {
		c, err := net.Dial("tcp", alice.proxy)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(data)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Read(make([]byte, 100))
		c.Close()
	}
	// A TCP request whose CSeq method disagrees gets 400 over its connection.
	carol := newTCPUA(t, "carol", "127.0.0.4", p, "10.1.2.3")
	carol.send(fmt.Sprintf("OPTIONS sip:bob@example.test SIP/2.0\n%s\nMax-Forwards: 70\nFrom: <sip:carol@example.test>;tag=1\nTo: <sip:bob@example.test>\nCall-ID: tcp-1\nCSeq: 1 INVITE\n\n", carol.via("t2")))
	if res := carol.recv("400", isResponse(400, "")).(*sip.Response); res.StatusCode != 400 {
		t.Errorf("TCP CSeq mismatch: %d", res.StatusCode)
	}

	// After all that, a normal call.
	dc, _ := call(t, alice, bob)
	alice.request(dc, "BYE")
	bob.okTo(bob.recv("BYE", isRequest("BYE")))
	alice.recv("200 to BYE", isResponse(200, "BYE"))
	if n := len(p.logLines("malformed SIP datagram")); n != 1 {
		t.Errorf("%d log lines for malformed datagrams, want 1 (rate-limited)", n)
	}
}

// TestConfigMistakes runs the binary on each kind of config mistake: the
// exit status is non-zero, stderr says FILE:LINE: key: what, and nothing
// is bound.
func TestConfigMistakes(t *testing.T) {
	requireE2E(t)
	port := freePort(t)
	dir := t.TempDir()
	listen := fmt.Sprintf("[sip]\nlisten = [\"udp:127.0.0.1:%d\"]\n", port)
	tests := []struct {
		name, toml, want string
	}{
		{"unknown key", listen + "colour = \"blue\"\n", ":3: sip.colour: unknown key"},
		{"wrong type", listen + "[media]\nport_min = \"low\"\n", ":4: media.port_min: incompatible types"},
		{"unparsable address", "[sip]\nlisten = [\"udp:127.0.0.999:5060\"]\n", ":2: sip.listen: \"udp:127.0.0.999:5060\""},
		{"unknown transport", "[sip]\nlisten = [\"sctp:127.0.0.1:5060\"]\n", ":2: sip.listen: \"sctp:127.0.0.1:5060\": unknown transport"},
		{"empty port range", listen + "[media]\nport_min = 30000\nport_max = 30000\n", ":5: media.port_max: range 30000..30000 is empty"},
		{"inverted port range", listen + "[media]\nport_min = 40000\nport_max = 30000\n", ":5: media.port_max: range 40000..30000 is inverted"},
		{"syntax", listen + "[media\nport_min = 1\n", ":3: expected '.' or ']' to end table name"},
		{"rtpengine key with the builtin engine", listen + "[relay]\nrtpengine_tout = \"2s\"\n", `:4: relay.rtpengine_tout: only applies to engine = "rtpengine"`},
		{"duplicate relay set", listen + "[relay]\nengine = \"rtpengine\"\n\n[[relay.set]]\nid = 1\nnodes = [\"udp:127.0.0.1:2223\"]\n\n[[relay.set]]\nid = 1\nnodes = [\"udp:127.0.0.1:2224\"]\n", ":11: relay.set.1.id: set 1 is defined twice"},
		{"unknown timeout mode", listen + "[media]\ntimeout_mode = \"either\"\n", `:4: media.timeout_mode: "either": want all or any`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".toml")
			if err := os.WriteFile(path, []byte(tc.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"config", "check", "-c", path}, {"serve", "-c", path}} {
				var stderr bytes.Buffer
				cmd := exec.Command(binPath, args...)
				cmd.Stderr = &stderr
				err := cmd.Run()
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
					t.Errorf("%s: exit %v, want non-zero", args[0], err)
				}
				if want := path + tc.want; !strings.Contains(stderr.String(), want) {
					t.Errorf("%s: stderr %q\nwant %q", args[0], stderr.String(), want)
				}
			}
		})
	}
	// Nothing was bound: the listen port of the bad configs is still free.
	if c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		t.Errorf("port %d taken after failed starts: %v", port, err)
	} else {
		c.Close()
	}
	// The example file is accepted as written.
	out, err := exec.Command(binPath, "config", "check", "-c", "../../testdata/config/example.toml").CombinedOutput()
	if err != nil {
		t.Errorf("example config rejected: %v\n%s", err, out)
	}
	// The printed defaults are a valid config file.
	def, err := exec.Command(binPath, "config", "defaults").Output()
	if err != nil || !strings.Contains(string(def), "port_min = 30000") {
		t.Fatalf("config defaults: %v", err)
	}
	defPath := filepath.Join(dir, "defaults.toml")
	_ = os.WriteFile(defPath, def, 0o644)
	if out, err := exec.Command(binPath, "config", "check", "-c", defPath).CombinedOutput(); err != nil {
		t.Errorf("printed defaults rejected: %v\n%s", err, out)
	}
}
