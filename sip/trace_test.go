package sip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"sipanchor/config"

	"github.com/emiago/sipgo/sip"
)

var (
	traceLocal  = netip.MustParseAddrPort("127.0.0.1:5060")
	traceRemote = netip.MustParseAddrPort("127.0.0.2:40000")
)

// traceMsg is a small request of call id, told apart by n.
func traceMsg(id string, n int) []byte {
	return fmt.Appendf(nil, "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:40000;branch=z9hG4bK%d\r\nCall-ID: %s\r\nCSeq: %d OPTIONS\r\nContent-Length: 0\r\n\r\n", n, id, n)
}

func seqs(es []TraceEntry) []int {
	var out []int
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

// TestTraceRingKeepsFirstAndLast: a call with more messages than it may
// keep keeps its first 8 (the initial INVITE and its answers) and its
// most recent, oldest first, numbered so that the gap shows.
func TestTraceRingKeepsFirstAndLast(t *testing.T) {
	for _, tt := range []struct {
		messages, sent int
		want           []int
	}{
		{20, 5, []int{1, 2, 3, 4, 5}},
		{20, 20, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}},
		{20, 30, []int{1, 2, 3, 4, 5, 6, 7, 8, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30}},
		{20, 41, []int{1, 2, 3, 4, 5, 6, 7, 8, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41}},
		{6, 10, []int{1, 2, 3, 8, 9, 10}}, // under 16: half are the first
		{1, 3, []int{3}},
	} {
		t.Run(fmt.Sprintf("%d of %d", tt.sent, tt.messages), func(t *testing.T) {
			tr := newTracer(config.Trace{Calls: 10, Messages: tt.messages})
			for i := 1; i <= tt.sent; i++ {
				tr.record(traceIn, "udp", traceLocal, traceRemote, traceMsg("a", i))
			}
			got := tr.entries("a")
			if fmt.Sprint(seqs(got)) != fmt.Sprint(tt.want) {
				t.Fatalf("kept %v, want %v", seqs(got), tt.want)
			}
			for _, e := range got {
				if !strings.Contains(e.Message, fmt.Sprintf("CSeq: %d OPTIONS", e.Seq)) {
					t.Errorf("entry %d holds another message:\n%s", e.Seq, e.Message)
				}
			}
		})
	}
}

// TestTraceEntryFields: what one entry says about its message.
func TestTraceEntryFields(t *testing.T) {
	tr := newTracer(config.Trace{Calls: 10, Messages: 10})
	in, out := traceMsg("f", 1), traceMsg("f", 2)
	tr.record(traceIn, "udp", traceLocal, traceRemote, in)
	in[0] = 'X' // the socket's buffer is reused: the trace has its own copy
	tr.record(traceOut, "tcp", traceLocal, traceRemote, out)
	got := tr.entries("f")
	if len(got) != 2 {
		t.Fatalf("entries = %+v", got)
	}
	want := []TraceEntry{
		{Dir: "in", Transport: "udp", Local: "127.0.0.1:5060", Remote: "127.0.0.2:40000", Seq: 1, Size: len(in), Message: string(traceMsg("f", 1))},
		{Dir: "out", Transport: "tcp", Local: "127.0.0.1:5060", Remote: "127.0.0.2:40000", Seq: 2, Size: len(out), Message: string(out)},
	}
	for i, e := range got {
		if e.Time.IsZero() || (i > 0 && e.Time.Before(got[i-1].Time)) {
			t.Errorf("entry %d time %v", i, e.Time)
		}
		e.Time = want[i].Time
		if e != want[i] {
			t.Errorf("entry %d = %+v\nwant %+v", i, e, want[i])
		}
	}
	if tr.entries("nobody") != nil {
		t.Error("a Call-ID never seen has entries")
	}
}

// TestTraceSendFailed: a message is recorded before it is handed to the
// socket (so that an answer to it never comes first); a send that fails
// then says so in its entry, unless the ring has moved past it.
func TestTraceSendFailed(t *testing.T) {
	tr := newTracer(config.Trace{Calls: 10, Messages: 4})
	m := tr.record(traceOut, "tcp", traceLocal, traceRemote, traceMsg("s", 1))
	m.failed(errors.New("broken pipe"))
	tr.record(traceIn, "tcp", traceLocal, traceRemote, traceMsg("s", 2))
	es := tr.entries("s")
	if len(es) != 2 || es[0].Error != "broken pipe" || es[1].Error != "" {
		t.Fatalf("entries %+v, want the first failed (broken pipe), the second not", es)
	}
	late := tr.record(traceOut, "tcp", traceLocal, traceRemote, traceMsg("s", 3))
	for i := 4; i <= 6; i++ {
		tr.record(traceIn, "tcp", traceLocal, traceRemote, traceMsg("s", i))
	}
	late.failed(errors.New("too late"))
	for _, e := range tr.entries("s") {
		if e.Error == "too late" {
			t.Errorf("message #%d marked with the failure of #3, whose slot it took", e.Seq)
		}
	}
	tr.record(traceIn, "udp", traceLocal, traceRemote, []byte("no Call-ID\r\n\r\n")).failed(errors.New("x")) // nothing to mark
}

// TestTraceEvictsOldestCall: past calls, the call first seen longest ago
// goes, however recently it had a message.
func TestTraceEvictsOldestCall(t *testing.T) {
	tr := newTracer(config.Trace{Calls: 3, Messages: 10})
	for i, id := range []string{"a", "b", "c"} {
		tr.record(traceIn, "udp", traceLocal, traceRemote, traceMsg(id, i))
	}
	tr.record(traceIn, "udp", traceLocal, traceRemote, traceMsg("a", 9))
	tr.record(traceIn, "udp", traceLocal, traceRemote, traceMsg("d", 1))
	if tr.entries("a") != nil {
		t.Error("the oldest call is still kept with a fourth one in a trace of 3")
	}
	for _, id := range []string{"b", "c", "d"} {
		if len(tr.entries(id)) != 1 {
			t.Errorf("call %s: %d entries, want 1", id, len(tr.entries(id)))
		}
	}
	tr.record(traceIn, "udp", traceLocal, traceRemote, traceMsg("a", 10))
	if len(tr.entries("a")) != 1 || tr.entries("b") != nil {
		t.Errorf("a call seen again after it went starts anew and pushes out the next oldest: a %v, b %v", seqs(tr.entries("a")), seqs(tr.entries("b")))
	}
}

// TestTraceCutsLongMessages: a message is kept up to traceMaxBytes; the
// entry says how long it was.
func TestTraceCutsLongMessages(t *testing.T) {
	tr := newTracer(config.Trace{Calls: 1, Messages: 20})
	long := traceMsg("l", 1)
	long = append(long[:len(long)-len("Content-Length: 0\r\n\r\n")], "Content-Length: 10000\r\n\r\n"...)
	long = append(long, strings.Repeat("x", 10000)...)
	for range 20 { // the ring's slots are reused: each keeps its own bytes
		tr.record(traceIn, "udp", traceLocal, traceRemote, long)
		tr.record(traceOut, "udp", traceLocal, traceRemote, traceMsg("l", 2))
	}
	for _, e := range tr.entries("l") {
		want := string(traceMsg("l", 2))
		if e.Dir == "in" {
			want = string(long[:traceMaxBytes])
		}
		if e.Message != want {
			t.Fatalf("entry %d (%s): %d bytes kept, want %d", e.Seq, e.Dir, len(e.Message), len(want))
		}
		if e.Dir == "in" && e.Size != len(long) {
			t.Errorf("size %d, want %d", e.Size, len(long))
		}
	}
}

// TestTraceOff: calls = 0 is no tracer at all, and recording into it
// does nothing.
func TestTraceOff(t *testing.T) {
	tr := newTracer(config.Trace{Calls: 0, Messages: 64})
	if tr != nil {
		t.Fatalf("calls = 0 made a tracer")
	}
	tr.record(traceIn, "udp", traceLocal, traceRemote, traceMsg("a", 1))
	if tr.entries("a") != nil {
		t.Error("a nil tracer has entries")
	}
}

// TestTraceConcurrent: messages of many calls from many goroutines (as
// sipgo's readers and writers send them) stay within the bounds.
func TestTraceConcurrent(t *testing.T) {
	tr := newTracer(config.Trace{Calls: 50, Messages: 16})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				id := fmt.Sprintf("c%d", (i+g*7)%120)
				tr.record(traceIn, "udp", traceLocal, traceRemote, traceMsg(id, i))
				if i%50 == 0 {
					tr.entries(id)
				}
			}
		})
	}
	wg.Wait()
	kept := 0
	for i := range 120 {
		es := tr.entries(fmt.Sprintf("c%d", i))
		if len(es) > 16 {
			t.Errorf("call c%d keeps %d messages, bound 16", i, len(es))
		}
		if es != nil {
			kept++
		}
	}
	if kept > 50 {
		t.Errorf("%d calls kept, bound 50", kept)
	}
}

func TestTraceCallID(t *testing.T) {
	for _, tt := range []struct{ name, msg, want string }{
		{"long form", "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: abc@h\r\nCSeq: 1 INVITE\r\n\r\n", "abc@h"},
		{"compact", "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h\r\ni: xyz\r\n\r\n", "xyz"},
		{"any case, white space", "BYE sip:b@x SIP/2.0\r\nCALL-id \t:  a b  \r\n\r\n", "a b"},
		{"folded", "BYE sip:b@x SIP/2.0\r\nCall-ID: abc\r\n  def\r\nCSeq: 2 BYE\r\n\r\n", "abc def"},
		{"name folded", "BYE sip:b@x SIP/2.0\r\nCall-ID\r\n : abc\r\n\r\n", "abc"},
		{"last of several, as sipgo", "BYE sip:b@x SIP/2.0\r\nCall-ID: one\r\ni: two\r\n\r\n", "two"},
		{"stops at the blank line", "MESSAGE sip:b@x SIP/2.0\r\nCSeq: 1 MESSAGE\r\n\r\nCall-ID: body\r\n", ""},
		{"LF line ends", "INVITE sip:b@x SIP/2.0\nVia: SIP/2.0/UDP h\nCall-ID: lf1\n\n", "lf1"},
		{"stream CRLFs first", "\r\n\r\nOPTIONS sip:x SIP/2.0\r\ni: s\r\n\r\n", "s"},
		{"empty value", "OPTIONS sip:x SIP/2.0\r\nCall-ID:   \r\n\r\n", ""},
		{"none", "OPTIONS sip:x SIP/2.0\r\nCall-IDx: no\r\nXi: no\r\n\r\n", ""},
		{"not a name prefix", "OPTIONS sip:x SIP/2.0\r\nX-Call-ID: no\r\n\r\n", ""},
		{"keepalive", "\r\n\r\n", ""},
		{"nothing", "", ""},
		{"unterminated", "OPTIONS sip:x SIP/2.0\r\nCall-ID: cut", "cut"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(traceCallID([]byte(tt.msg))); got != tt.want {
				t.Errorf("Call-ID %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzTraceCallID: the scanner never panics and finds the Call-ID sipgo's
// parser finds in any message it parses.
func FuzzTraceCallID(f *testing.F) {
	f.Add([]byte(benchInvite))
	f.Add([]byte("SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h\r\ni: xyz\r\n\r\n"))
	f.Add([]byte("BYE sip:b@x SIP/2.0\r\nCall-ID: abc\r\n  def\r\nCSeq: 2 BYE\r\n\r\n"))
	f.Add([]byte("BYE sip:b@x SIP/2.0\r\nCall-ID\r\n : abc\r\ni: two\r\n\r\n"))
	f.Add([]byte("INVITE sip:b@x SIP/2.0\nCall-ID: lf1\n\n"))
	f.Add([]byte("SIP/2.0 200 OK\ni: in-reason\r\nCall-ID: real\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got := traceCallID(data)
		m, err := sip.ParseMessage(data)
		if err != nil || m.CallID() == nil {
			return
		}
		if want := string(*m.CallID()); string(got) != want {
			t.Fatalf("Call-ID %q, sipgo reads %q", got, want)
		}
	})
}

// traceInvite is an INVITE of about 800 bytes, as a softphone sends one
// through a proxy, with Call-ID id.
func traceInvite(id string) []byte {
	head := strings.Replace(benchInviteHead, "a84b4c76e66710@pc33.example.test", id, 1) +
		"Record-Route: <sip:203.0.113.10:5060;lr>\r\n" +
		"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK, REFER, NOTIFY\r\n" +
		"Supported: replaces, timer, 100rel\r\n" +
		"User-Agent: Example Softphone 1.2.3\r\n" +
		"Session-Expires: 1800\r\n"
	sdp := benchSDP + "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
	return fmt.Appendf(nil, "%sContent-Length: %d\r\n\r\n%s", head, len(sdp), sdp)
}

// BenchmarkTraceRecord is what capture adds to each message: "off" is
// [trace] calls = 0; "call" a message of a call already traced (its ring
// full, slots reused); "new call" one that starts a call and pushes out
// the oldest; "parallel" messages of 10,000 calls from every core.
func BenchmarkTraceRecord(b *testing.B) {
	msg := traceInvite("a84b4c76e66710@pc33.example.test")
	cfg := config.Trace{Calls: 1000, Messages: 64}
	run := func(name string, tr *tracer, msgs [][]byte) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tr.record(traceIn, "udp", traceLocal, traceRemote, msgs[i%len(msgs)])
				i++
			}
		})
	}
	run("off", newTracer(config.Trace{}), [][]byte{msg})
	run("call", newTracer(cfg), [][]byte{msg})
	var fresh [][]byte
	for i := range 4096 {
		fresh = append(fresh, traceInvite(fmt.Sprintf("%08d@pc33.example.test", i)))
	}
	run("new call", newTracer(cfg), fresh)
	b.Run("parallel", func(b *testing.B) {
		tr := newTracer(cfg)
		var calls [][]byte
		for i := range 10000 {
			calls = append(calls, traceInvite(fmt.Sprintf("%08d@pc33.example.test", i)))
		}
		for _, m := range calls[:1000] { // the last 1,000 calls are kept
			tr.record(traceIn, "udp", traceLocal, traceRemote, m)
		}
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		var start atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			i := start.Add(397) // each goroutine on calls of its own, mostly
			for pb.Next() {
				tr.record(traceIn, "udp", traceLocal, traceRemote, calls[i%1000])
				i++
			}
		})
	})
}

// BenchmarkTraceCallID is the Call-ID scan alone.
func BenchmarkTraceCallID(b *testing.B) {
	msg := traceInvite("a84b4c76e66710@pc33.example.test")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if len(traceCallID(msg)) == 0 {
			b.Fatal("no Call-ID")
		}
	}
}

// BenchmarkTraceReadPath is a UDP datagram's trip through the read filter
// (the screening every datagram gets before sipgo parses it) with capture
// off and on: what the trace adds to the packet path, in proportion.
func BenchmarkTraceReadPath(b *testing.B) {
	msg := traceInvite("a84b4c76e66710@pc33.example.test")
	props := sip.TransportReadProps{Transport: "UDP", LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}, RemoteAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}}
	for _, calls := range []int{0, 1000} {
		b.Run(fmt.Sprintf("calls=%d", calls), func(b *testing.B) {
			tr := newTracer(config.Trace{Calls: calls, Messages: 64})
			df := &datagramFilter{parser: sip.NewParser(), bad: func(string, net.Addr) {}}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				tr.received(props, msg)
				if out, _ := df.filter(props, msg); out == nil {
					b.Fatal("dropped")
				}
			}
		})
	}
}

// Big messages under many Call-IDs cannot grow the trace past [trace]
// memory: the oldest calls go first, the newest stay readable.
func TestTraceMemoryBound(t *testing.T) {
	const budget = 256 << 10
	tr := newTracer(config.Trace{Calls: 1000, Messages: 64, Memory: budget})
	body := strings.Repeat("x", 4000)
	for i := range 500 {
		msg := fmt.Sprintf("OPTIONS sip:a@h SIP/2.0\r\nCall-ID: big-%d\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
		tr.record(traceIn, "udp", netip.AddrPort{}, netip.AddrPort{}, []byte(msg))
		if held := tr.bytes.Load(); held > budget+8<<10 {
			t.Fatalf("after %d calls the trace holds %d bytes, budget %d", i+1, held, budget)
		}
	}
	if got := tr.entries("big-499"); len(got) != 1 {
		t.Fatalf("newest call: %d entries, want 1", len(got))
	}
	if got := tr.entries("big-0"); got != nil {
		t.Fatalf("oldest call still kept past the budget")
	}
	if n := len(tr.order); n < 40 || n > 70 {
		t.Fatalf("%d calls kept, want about budget/4 KiB = 64", n)
	}
}
