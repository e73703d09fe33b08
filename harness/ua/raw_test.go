package ua

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// rawPeer is a bare UDP socket a test reads and writes SIP or RTP with,
// to see exactly what the UA sends and from where.
type rawPeer struct {
	t testing.TB
	c *net.UDPConn
}

func newRawPeer(t testing.TB, ip string) *rawPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, c: c}
}

func (p *rawPeer) addr() netip.AddrPort { return p.c.LocalAddr().(*net.UDPAddr).AddrPort() }

// readRaw returns the next packet within timeout, or ok=false.
func (p *rawPeer) readRaw(timeout time.Duration) (b []byte, src netip.AddrPort, ok bool) {
	p.t.Helper()
	_ = p.c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 65535)
	n, src, err := p.c.ReadFromUDPAddrPort(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, src, false
	}
	if err != nil {
		p.t.Fatal(err)
	}
	return buf[:n], netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), true
}

// read returns the next SIP message (skipping keepalives), failing the
// test after timeout.
func (p *rawPeer) read(timeout time.Duration) (sip.Message, string, netip.AddrPort) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, src, ok := p.readRaw(time.Until(deadline))
		if !ok {
			p.t.Fatalf("%v: no SIP message within %v", p.addr(), timeout)
		}
		if strings.TrimSpace(string(b)) == "" {
			continue
		}
		m, err := sip.ParseMessage(b)
		if err != nil {
			p.t.Fatalf("unparsable message %q: %v", b, err)
		}
		m.SetSource(src.String())
		return m, string(b), src
	}
}

// request reads the next request, which must be method.
func (p *rawPeer) request(method sip.RequestMethod, timeout time.Duration) (*sip.Request, string) {
	p.t.Helper()
	m, text, _ := p.read(timeout)
	req, ok := m.(*sip.Request)
	if !ok || req.Method != method {
		p.t.Fatalf("got %q, want a %s", text, method)
	}
	return req, text
}

func (p *rawPeer) send(m sip.Message, to netip.AddrPort) {
	p.t.Helper()
	if _, err := p.c.WriteToUDPAddrPort([]byte(m.String()), to); err != nil {
		p.t.Fatal(err)
	}
}

// reply answers req (with body as SDP when not nil) to where it came from.
func (p *rawPeer) reply(req *sip.Request, code int, body []byte) *sip.Response {
	p.t.Helper()
	res := sip.NewResponseFromRequest(req, code, reasonFor(code), nil)
	if code > 100 {
		res.To().Params.Add("tag", "raw")
	}
	if code >= 200 && code < 300 && req.Method == sip.INVITE {
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: p.addr().Addr().String(), Port: int(p.addr().Port())}})
	}
	if body != nil {
		withSDP(res, body)
	}
	src, _ := netip.ParseAddrPort(req.Source())
	p.send(res, src)
	return res
}

// answerSDP is a callee's SDP: PCMU and telephone-event 101 at rtp.
func answerSDP(t testing.TB, rtp netip.AddrPort) []byte {
	t.Helper()
	b, err := localSDP{sessID: 1, version: 1, addr: rtp, dir: dirSendRecv, dtmfPT: ptEvent}.marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// options is an out-of-dialog OPTIONS from p to the UA.
func (p *rawPeer) options(to netip.AddrPort, branch string) *sip.Request {
	uri := sip.Uri{Scheme: "sip", User: "alice", Host: to.Addr().String(), Port: int(to.Port())}
	from := sip.Uri{Scheme: "sip", User: "raw", Host: p.addr().Addr().String(), Port: int(p.addr().Port())}
	req := sip.NewRequest(sip.OPTIONS, uri)
	vp := sip.NewParams()
	vp.Add("branch", branch)
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: p.addr().Addr().String(), Port: int(p.addr().Port()), Params: vp})
	req.AppendHeader(fromHeader(from, "rawtag"))
	req.AppendHeader(toHeader(uri, ""))
	id := sip.CallIDHeader(newID())
	req.AppendHeader(&id)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.SetBody(nil)
	return req
}
