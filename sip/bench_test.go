package sip

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"sipanchor/config"
	"sipanchor/store"

	"github.com/emiago/sipgo/sip"
)

var benchInvite = benchInviteHead + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(benchSDP)) + benchSDP

const benchInviteHead = "INVITE sip:bob@example.test SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.168.1.60:5060;branch=z9hG4bK776asdhds;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: <sip:alice@example.test>;tag=1928301774\r\n" +
	"To: <sip:bob@example.test>\r\n" +
	"Call-ID: a84b4c76e66710@pc33.example.test\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:alice@192.168.1.60:5060>\r\n" +
	"Content-Type: application/sdp\r\n"

const benchSDP = "v=0\r\no=- 1 1 IN IP4 192.168.1.60\r\ns=-\r\nc=IN IP4 192.168.1.60\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"

// BenchmarkDatagramFilter is the cost the UDP pre-check adds to every
// datagram (sipgo parses it again afterwards).
func BenchmarkDatagramFilter(b *testing.B) {
	df := &datagramFilter{parser: sip.NewParser(), bad: func(string, net.Addr) {}}
	props := sip.TransportReadProps{Transport: "UDP", LocalAddr: &net.UDPAddr{}, RemoteAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}}
	data := []byte(benchInvite)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if out, _ := df.filter(props, data); out == nil {
			b.Fatal("dropped")
		}
	}
}

// BenchmarkRegister is one REGISTER refresh through the registrar,
// including its SQLite write (WAL, synchronous=NORMAL).
func BenchmarkRegister(b *testing.B) {
	db, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "b.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	loc, err := OpenLocation(context.Background(), db, log)
	if err != nil {
		b.Fatal(err)
	}
	r := &registrar{loc: loc, cfg: config.Registrar{MinExpires: 60, MaxExpires: 3600, DefaultExpires: 3600, MaxContacts: 10}, log: log, now: time.Now}
	src := regSource{addr: netip.MustParseAddrPort("127.0.0.2:5060"), transport: "udp", local: "udp:127.0.0.1:5060"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		msg := fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bK%d\r\nFrom: <sip:u%d@example.test>;tag=1\r\nTo: <sip:u%d@example.test>\r\nCall-ID: r%d\r\nCSeq: %d REGISTER\r\nContact: <sip:u@127.0.0.2>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n", i, i%1000, i%1000, i%1000, i)
		m, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			b.Fatal(err)
		}
		if res := r.register(context.Background(), m.(*sip.Request), src); res.StatusCode != 200 {
			b.Fatalf("%d %s", res.StatusCode, res.Reason)
		}
	}
}
