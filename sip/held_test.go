package sip

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// nullConn is a sipgo connection that sends nowhere.
type nullConn struct{}

func (nullConn) LocalAddr() net.Addr        { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060} }
func (nullConn) WriteMsg(sip.Message) error { return nil }
func (nullConn) Ref(int) int                { return 1 }
func (nullConn) TryClose() (int, error)     { return 1, nil }
func (nullConn) Close() error               { return nil }

// parseRequest parses raw (LF line ends) as a request from 127.0.0.2.
func parseRequest(t *testing.T, raw string) *sip.Request {
	t.Helper()
	m, err := sip.NewParser().ParseSIP([]byte(strings.ReplaceAll(raw, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetSource("127.0.0.2:5062")
	return req
}

func invite(n int, toTag string) string {
	return fmt.Sprintf("INVITE sip:nobody@example.test SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-%d\nMax-Forwards: 70\nFrom: <sip:a@example.test>;tag=f%d\nTo: <sip:nobody@example.test>%s\nCall-ID: held-%d\nCSeq: 1 INVITE\nContent-Length: 0\n", n, n, toTag, n)
}

// TestHeldAnswersBounded: the transactions of local answers are kept up to
// the bound; past it an answer's transaction ends at once, and one that
// ends makes room again. Every answer to a request has the same To tag,
// and an ACK bearing it is known as the ACK of a local answer.
func TestHeldAnswersBounded(t *testing.T) {
	h := newHeldAnswers(2)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	answer := func(n int) (*sip.ServerTx, *sip.Response) {
		req := parseRequest(t, invite(n, "")+"\n")
		tx := sip.NewServerTx(fmt.Sprint("key", n), req, nullConn{}, log)
		if err := tx.Init(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tx.Terminate)
		res := sip.NewResponseFromRequest(req, sip.StatusNotFound, "Not Found", nil)
		if !localAnswer(req, res) {
			t.Fatal("a 404 to an out-of-dialog INVITE is not a local answer")
		}
		h.label(req, res)
		if err := tx.Respond(res); err != nil {
			t.Fatal(err)
		}
		h.keep(tx)
		return tx, res
	}
	ended := func(tx *sip.ServerTx) bool {
		select {
		case <-tx.Done():
			return true
		default:
			return false
		}
	}
	first, res := answer(1)
	answer(2)
	third, _ := answer(3)
	if held, stateless := h.n.Load(), h.stateless.Load(); held != 2 || stateless != 1 {
		t.Fatalf("held %d, stateless %d; want 2 and 1", held, stateless)
	}
	if ended(first) || !ended(third) {
		t.Fatalf("first ended %v, third ended %v; want the first kept and the third ended", ended(first), ended(third))
	}
	first.Terminate()
	if held := h.n.Load(); held != 1 {
		t.Fatalf("held %d after a kept transaction ended, want 1", held)
	}
	if fourth, _ := answer(4); ended(fourth) {
		t.Fatal("no room made when a kept transaction ended")
	}

	again := sip.NewResponseFromRequest(parseRequest(t, invite(1, "")+"\n"), sip.StatusNotFound, "Not Found", nil)
	h.label(parseRequest(t, invite(1, "")+"\n"), again)
	tag, _ := res.To().Params.Get("tag")
	if tag2, _ := again.To().Params.Get("tag"); tag2 != tag {
		t.Errorf("two answers to one request tagged %q and %q", tag, tag2)
	}
	if ack := parseRequest(t, "ACK"+invite(1, ";tag="+tag)[len("INVITE"):]+"\n"); !h.ours(ack) {
		t.Error("the ACK of a local answer is not known")
	}
	if ack := parseRequest(t, "ACK"+invite(1, ";tag=callee")[len("INVITE"):]+"\n"); h.ours(ack) {
		t.Error("an ACK with a callee's To tag is taken for one of a local answer")
	}
}

// TestLocalAnswer: which final answers have their transaction bounded.
func TestLocalAnswer(t *testing.T) {
	for _, tt := range []struct {
		name   string
		req    string
		status int
		want   bool
	}{
		{"404 to an INVITE", invite(1, ""), 404, true},
		{"100 to an INVITE", invite(1, ""), 100, false},
		{"a re-INVITE's 491", invite(1, ";tag=x"), 491, false},
		{"200 to a REGISTER", "REGISTER sip:example.test SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-r\nFrom: <sip:a@example.test>;tag=f\nTo: <sip:a@example.test>\nCall-ID: r\nCSeq: 1 REGISTER\nContent-Length: 0\n", 200, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := parseRequest(t, tt.req+"\n")
			if got := localAnswer(req, sip.NewResponseFromRequest(req, tt.status, "x", nil)); got != tt.want {
				t.Errorf("localAnswer = %v, want %v", got, tt.want)
			}
		})
	}
}
