package sip

import (
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const shedInvite = "INVITE sip:bob@example.test SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n" +
	"Max-Forwards: 70\r\nTo: Bob <sip:bob@example.test>%s\r\n" +
	"From: Alice <sip:alice@example.test>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n"

func TestQueueShedOnlyNewCallsThatWaited(t *testing.T) {
	var refused atomic.Uint64
	logged := 0
	q := &queueShed{maxDelay: 100 * time.Millisecond, retryAfter: "5", refused: &refused,
		log: func(uint64, time.Duration) { logged++ }}
	initial := []byte(strings.Replace(shedInvite, "%s", "", 1))
	reinvite := []byte(strings.Replace(shedInvite, "%s", " ; tag = 8321234356", 1))
	bye := []byte(strings.Replace(strings.Replace(string(initial), "INVITE sip", "BYE sip", 1), "314159 INVITE", "314160 BYE", 1))
	for _, c := range []struct {
		name   string
		waited time.Duration
		data   []byte
		shed   bool
	}{
		{"new call, waited too long", 150 * time.Millisecond, initial, true},
		{"new call, in time", 90 * time.Millisecond, initial, false},
		{"re-INVITE (LWS around the tag's =)", time.Second, reinvite, false},
		{"BYE", time.Second, bye, false},
		{"junk", time.Second, []byte("INVITE \r\n\r\n"), false},
	} {
		res := q.reply(c.waited, c.data)
		if (res != nil) != c.shed {
			t.Errorf("%s: reply %q, want shed=%v", c.name, res, c.shed)
			continue
		}
		if res == nil {
			continue
		}
		s := string(res)
		for _, want := range []string{"SIP/2.0 503 Service Unavailable\r\n", "\r\nRetry-After: 5\r\n",
			"\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n", "\r\nCall-ID: a84b4c76e66710\r\n",
			"\r\nCSeq: 314159 INVITE\r\n", "\r\nTo: Bob <sip:bob@example.test>;tag="} {
			if !strings.Contains(s, want) {
				t.Errorf("%s: reply lacks %q:\n%s", c.name, want, s)
			}
		}
	}
	if refused.Load() != 1 || logged != 1 {
		t.Errorf("refused %d, logged %d; want 1, 1", refused.Load(), logged)
	}
	var off *queueShed
	if off.reply(time.Hour, initial) != nil {
		t.Error("a nil shedder shed")
	}
}

func TestHasTag(t *testing.T) {
	for v, want := range map[string]bool{
		"<sip:bob@example.test>":                   false,
		"<sip:bob@example.test;tag=x>":             false, // a URI parameter, not the header's
		"<sip:bob@example.test>;tag=1":             true,
		"<sip:bob@example.test> ; TAG = 1":         true,
		"sip:bob@example.test;tag=1":               true,
		"\"a>b\" <sip:bob@example.test>;tagx=1":    false,
		"<sip:bob@example.test>;foo=bar;tag=abc;x": true,
	} {
		if got := hasTag(v); got != want {
			t.Errorf("hasTag(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestStampedConnMeasuresTheWait: a datagram left unread for a while
// reads as having waited that long; one read at once as not.
func TestStampedConnMeasuresTheWait(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := newStampedConn(pc)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	buf := make([]byte, 100)
	read := func() time.Duration {
		_ = s.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := s.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "x" || from.(*net.UDPAddr).Port != tx.LocalAddr().(*net.UDPAddr).Port {
			t.Fatalf("read %q from %v: %v", buf[:n], from, err)
		}
		return s.Waited()
	}
	// Linux turns arrival stamping on for the whole machine a moment
	// after the first socket asks (a deferred static key); until then a
	// datagram is stamped when it is read. So the first measurement is
	// repeated until stamps are on, within a deadline.
	var w, before time.Duration
	for start := time.Now(); time.Since(start) < 3*time.Second; {
		sent := time.Now()
		tx.Write([]byte("x"))
		// The datagram is left in the queue on purpose: the wait is what is measured.
		time.Sleep(80 * time.Millisecond)
		before = time.Since(sent)
		if w = read(); w >= 75*time.Millisecond {
			break
		}
	}
	if w < 75*time.Millisecond || w > before+time.Second {
		t.Errorf("waited %v, want about %v", w, before)
	}
	tx.Write([]byte("x"))
	if w := read(); w > 50*time.Millisecond {
		t.Errorf("read at once but waited %v", w)
	}
	if avg := s.delay(); avg <= 0 || avg > 80*time.Millisecond {
		t.Errorf("moving average %v after waits of 80 ms and 0", avg)
	}
}

// FuzzArrival: any control-message bytes give a time or false, never a
// panic or a read past the buffer.
func FuzzArrival(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 32))
	ok := []byte{32, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 35, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}
	f.Add(ok)
	f.Fuzz(func(t *testing.T, oob []byte) {
		at, good := arrival(oob)
		if !good && at != 0 {
			t.Fatalf("no stamp but time %d", at)
		}
	})
}

// FuzzQueueShed: whatever the bytes, a reply is a 503 and only ever
// answers an INVITE.
func FuzzQueueShed(f *testing.F) {
	f.Add([]byte(strings.Replace(shedInvite, "%s", "", 1)))
	f.Add([]byte(strings.Replace(shedInvite, "%s", ";tag=1", 1)))
	f.Add([]byte("INVITE sip:x SIP/2.0\r\nTo: <sip:x>\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var n atomic.Uint64
		q := &queueShed{maxDelay: time.Millisecond, retryAfter: "1", refused: &n}
		res := q.reply(time.Second, data)
		if res == nil {
			return
		}
		if !strings.HasPrefix(string(data), "INVITE ") || !strings.HasPrefix(string(res), "SIP/2.0 503 ") {
			t.Fatalf("replied %q to %q", res, data)
		}
	})
}

// TestStatelessACKDropped: the ACK of a response sent without a
// transaction carries that response's To tag and is recognised by it; an
// ACK of anything else, or another request with such a tag, is not.
func TestStatelessACKDropped(t *testing.T) {
	var n atomic.Uint64
	q := &queueShed{maxDelay: time.Millisecond, retryAfter: "1", refused: &n}
	res := string(q.reply(time.Second, []byte(strings.Replace(shedInvite, "%s", "", 1))))
	to := ""
	for _, l := range strings.Split(res, "\r\n") {
		if v, ok := strings.CutPrefix(l, "To: "); ok {
			to = v
		}
	}
	ack := func(to string) []byte {
		return []byte("ACK sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n" +
			"Max-Forwards: 70\r\nTo: " + to + "\r\nFrom: Alice <sip:alice@example.test>;tag=1928301774\r\n" +
			"Call-ID: a84b4c76e66710\r\nCSeq: 314159 ACK\r\nContent-Length: 0\r\n\r\n")
	}
	if !statelessACK(ack(to)) {
		t.Errorf("the 503's ACK (To: %s) not recognised", to)
	}
	if statelessACK(ack("Bob <sip:bob@example.test>;tag=callee1")) {
		t.Error("an ACK with the callee's tag taken for a stateless one")
	}
	bye := strings.Replace(string(ack(to)), "ACK sip:", "BYE sip:", 1)
	if statelessACK([]byte(bye)) {
		t.Error("a BYE taken for an ACK")
	}
}

// TestUDPBuffersGrown: a SIP socket's receive buffer is grown past the
// kernel's default (212 KiB), to what was asked when the process may
// force it (root, as in CI and most deployments).
func TestUDPBuffersGrown(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got, err := setUDPBuffers(pc, udpBufferSize)
	if err != nil {
		t.Fatal(err)
	}
	want := udpBufferSize // the kernel reports twice what it accounts
	if os.Geteuid() != 0 {
		want = 212992 + 1 // not root: capped by rmem_max, but grown
	}
	if got < want {
		t.Errorf("receive buffer %d bytes, want at least %d", got, want)
	}
}
