package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"golang.org/x/net/dns/dnsmessage"
)

// zoneDNS is a DNS server answering A and SRV queries from a table, and
// NOERROR with no answer for anything else it is asked.
type zoneDNS struct {
	pc net.PacketConn
	mu sync.Mutex
	a  map[string]netip.Addr               // name. → IPv4
	sr map[string][]dnsmessage.SRVResource // _sip._udp.name. → records
}

func startZoneDNS(t *testing.T) *zoneDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z := &zoneDNS{pc: pc, a: map[string]netip.Addr{}, sr: map[string][]dnsmessage.SRVResource{}}
	t.Cleanup(func() { pc.Close() })
	go z.serve()
	return z
}

func (z *zoneDNS) addA(name, ip string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.a[name+"."] = netip.MustParseAddr(ip)
}

func (z *zoneDNS) addSRV(name string, prio, weight uint16, port int, target string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.sr[name+"."] = append(z.sr[name+"."], dnsmessage.SRVResource{Priority: prio, Weight: weight, Port: uint16(port),
		Target: dnsmessage.MustNewName(target + ".")})
}

func (z *zoneDNS) serve() {
	buf := make([]byte, 2048)
	for {
		n, from, err := z.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var m dnsmessage.Message
		if m.Unpack(buf[:n]) != nil || len(m.Questions) != 1 {
			continue
		}
		res := z.answer(m)
		if out, err := res.Pack(); err == nil {
			_, _ = z.pc.WriteTo(out, from)
		}
	}
}

func (z *zoneDNS) answer(q dnsmessage.Message) dnsmessage.Message {
	z.mu.Lock()
	defer z.mu.Unlock()
	qq := q.Questions[0]
	name := strings.ToLower(qq.Name.String())
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID, Response: true, Authoritative: true, RecursionAvailable: true}, Questions: q.Questions}
	h := dnsmessage.ResourceHeader{Name: qq.Name, Class: dnsmessage.ClassINET, TTL: 60}
	switch qq.Type {
	case dnsmessage.TypeA:
		if a, ok := z.a[name]; ok {
			h.Type = dnsmessage.TypeA
			m.Answers = append(m.Answers, dnsmessage.Resource{Header: h, Body: &dnsmessage.AResource{A: a.As4()}})
		}
	case dnsmessage.TypeSRV:
		for _, r := range z.sr[name] {
			h.Type = dnsmessage.TypeSRV
			m.Answers = append(m.Answers, dnsmessage.Resource{Header: h, Body: &dnsmessage.SRVResource{Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: r.Target}})
		}
	}
	if len(m.Answers) == 0 && z.a[name] == (netip.Addr{}) && z.sr[name] == nil {
		m.RCode = dnsmessage.RCodeNameError
	}
	return m
}

// TestRouteBySRV: a route to a host name without a port is resolved as
// RFC 3263 §4.2 says: the SRV records of _sip._udp.NAME, lowest priority
// first, then the chosen target's address; the call reaches the carrier
// there, on the SRV's port. A name with a port, and a name without SRV
// records, go by its address records (port 5060 for the latter).
func TestRouteBySRV(t *testing.T) {
	dns := startZoneDNS(t)
	main, backup := freePort(t), freePort(t)
	dns.addSRV("_sip._udp.carrier.test", 10, 1, main, "sbc1.carrier.test")
	dns.addSRV("_sip._udp.carrier.test", 20, 1, backup, "sbc2.carrier.test")
	dns.addA("sbc1.carrier.test", "127.0.0.5")
	dns.addA("sbc2.carrier.test", "127.0.0.6")
	dns.addA("pbx.office.test", "127.0.0.7")
	pbxPort := freePort(t)
	p := startProxySIP(t, fmt.Sprintf("resolver = %q", dns.pc.LocalAddr().String()), fmt.Sprintf(`[[route]]
match = "sip:*@carrier.test"
to = "sip:carrier.test"

[[route]]
match = "sip:*@office.test"
to = "sip:pbx.office.test:%d"
`, pbxPort)+officePeer)
	sbc1 := newUAOn(t, "sbc1", fmt.Sprintf("127.0.0.5:%d", main), p)
	sbc2 := newUAOn(t, "sbc2", fmt.Sprintf("127.0.0.6:%d", backup), p)
	pbx := newUAOn(t, "pbx", fmt.Sprintf("127.0.0.7:%d", pbxPort), p)
	alice := newUA(t, "alice", "127.0.0.2", p, "")

	for i := range 3 {
		alice.inviteAs(fmt.Sprintf("sip:%d@carrier.test", i), "sip:alice@example.test", "")
		inv := sbc1.recv("INVITE to the SRV target of lowest priority", isRequest("INVITE")).(*sip.Request)
		if inv.Recipient.Host != "carrier.test" {
			t.Errorf("Request-URI %s rewritten: a route's next hop is not the Request-URI", inv.Recipient.String())
		}
	}
	sbc2.quiet("INVITE to the backup SRV target", 200*time.Millisecond, isRequest("INVITE"))
	alice.inviteAs("sip:1@office.test", "sip:alice@example.test", "")
	pbx.recv("INVITE to a name with a port, by its A record", isRequest("INVITE"))
}
