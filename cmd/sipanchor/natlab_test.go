package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// natLab is a real NAT in front of a user agent, built from Linux network
// namespaces for one test:
//
//	[ua netns] uaAddr ──veth── [nat netns: MASQUERADE --random] natOut ──veth── hostIf public [this netns: sipanchor]
//
// Sockets the test opens inside lab.in(...) live in the UA's namespace, so
// their packets reach sipanchor through the NAT with a source address and
// port rewritten at random, as a home router does. Everything is removed
// at cleanup. It needs root and the ip and iptables commands (CI installs
// iproute2 and iptables); it fails rather than skips without them.
type natLab struct {
	t      *testing.T
	uaNS   string
	natNS  string
	hostIf string
	public netip.Addr // this namespace's end: where the UA sends SIP and RTP
	natOut netip.Addr // the NAT's outside address: the source sipanchor sees
	uaAddr netip.Addr // the UA's private address
}

func newNATLab(t *testing.T) *natLab {
	t.Helper()
	requireE2E(t)
	if os.Geteuid() != 0 {
		t.Fatal("the real-NAT tests need root (network namespaces, iptables)")
	}
	for _, cmd := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("the real-NAT tests need %s (apt-get install iproute2 iptables): %v", cmd, err)
		}
	}
	id := fmt.Sprintf("%04x", rand.IntN(0x10000))
	n := 1 + rand.IntN(250)
	l := &natLab{
		t: t, uaNS: "sa-ua-" + id, natNS: "sa-nat-" + id, hostIf: "sah" + id,
		public: netip.MustParseAddr(fmt.Sprintf("10.203.%d.1", n)),
		natOut: netip.MustParseAddr(fmt.Sprintf("10.203.%d.2", n)),
		uaAddr: netip.MustParseAddr(fmt.Sprintf("10.202.%d.2", n)),
	}
	t.Cleanup(l.teardown)
	l.run("ip", "netns", "add", l.uaNS)
	l.run("ip", "netns", "add", l.natNS)
	// UA ↔ NAT inside.
	l.run("ip", "link", "add", "sau"+id, "netns", l.uaNS, "type", "veth", "peer", "name", "san"+id, "netns", l.natNS)
	// NAT outside ↔ this namespace.
	l.run("ip", "link", "add", l.hostIf, "type", "veth", "peer", "name", "sao"+id, "netns", l.natNS)
	inside := fmt.Sprintf("10.202.%d.1", n)
	l.ns(l.uaNS, "ip", "link", "set", "lo", "up")
	l.ns(l.uaNS, "ip", "addr", "add", l.uaAddr.String()+"/24", "dev", "sau"+id)
	l.ns(l.uaNS, "ip", "link", "set", "sau"+id, "up")
	l.ns(l.uaNS, "ip", "route", "add", "default", "via", inside)
	l.ns(l.natNS, "ip", "link", "set", "lo", "up")
	l.ns(l.natNS, "ip", "addr", "add", inside+"/24", "dev", "san"+id)
	l.ns(l.natNS, "ip", "link", "set", "san"+id, "up")
	l.ns(l.natNS, "ip", "addr", "add", l.natOut.String()+"/24", "dev", "sao"+id)
	l.ns(l.natNS, "ip", "link", "set", "sao"+id, "up")
	l.ns(l.natNS, "ip", "route", "add", "default", "via", l.public.String())
	l.ns(l.natNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.ns(l.natNS, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "sao"+id, "-j", "MASQUERADE", "--random")
	l.run("ip", "addr", "add", l.public.String()+"/24", "dev", l.hostIf)
	l.run("ip", "link", "set", l.hostIf, "up")
	return l
}

// run runs a command in this namespace; a failure fails the test.
func (l *natLab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// ns runs a command in namespace name.
func (l *natLab) ns(name string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "netns", "exec", name}, args...)...)
}

// dnatToLoopback sends what arrives on the host end for proto/port to
// 127.0.0.1:port, as a port forward to a service bound on loopback does.
func (l *natLab) dnatToLoopback(proto string, port int) {
	l.t.Helper()
	l.run("sysctl", "-qw", "net.ipv4.conf."+l.hostIf+".route_localnet=1")
	rule := []string{"PREROUTING", "-i", l.hostIf, "-p", proto, "--dport", fmt.Sprint(port), "-j", "DNAT", "--to-destination", fmt.Sprintf("127.0.0.1:%d", port)}
	l.run(append([]string{"iptables", "-t", "nat", "-A"}, rule...)...)
	l.t.Cleanup(func() {
		_ = exec.Command("iptables", append([]string{"-t", "nat", "-D"}, rule...)...).Run()
	})
}

// in runs fn with the calling thread in the UA's namespace: sockets opened
// by fn belong to that namespace for their whole life.
func (l *natLab) in(fn func()) {
	l.t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		l.t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + l.uaNS)
	if err != nil {
		runtime.UnlockOSThread()
		l.t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		l.t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and dies with this goroutine rather
			// than run other goroutines in the wrong namespace.
			panic(err)
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

func (l *natLab) teardown() {
	// Deleting a namespace deletes its veth ends, and so their peers.
	_ = exec.Command("ip", "netns", "del", l.uaNS).Run()
	_ = exec.Command("ip", "netns", "del", l.natNS).Run()
	_ = exec.Command("ip", "link", "del", l.hostIf).Run()
}

// natUA is a UDP ua inside the lab's UA namespace, sending to sipanchor at
// the lab's public address; its Contact names its private address.
func (l *natLab) natUA(name string, p *proxy, sipPort int) *ua {
	l.t.Helper()
	var u *ua
	l.in(func() { u = newUA(l.t, name, l.uaAddr.String(), p, "") })
	u.proxy = net.JoinHostPort(l.public.String(), fmt.Sprint(sipPort))
	return u
}

// natTCPUA is a TCP ua inside the lab's UA namespace, connected to
// sipanchor at the lab's public address.
func (l *natLab) natTCPUA(name string, sipPort int) *ua {
	l.t.Helper()
	var u *ua
	addr := net.JoinHostPort(l.public.String(), fmt.Sprint(sipPort))
	l.in(func() { u = dialTCPUA(l.t, name, l.uaAddr.String(), addr, l.uaAddr.String()) })
	return u
}

// natRTP is an RTP socket inside the lab's UA namespace.
func (l *natLab) natRTP() *rtpPeer {
	l.t.Helper()
	var r *rtpPeer
	l.in(func() { r = newRTP(l.t, l.uaAddr.String()) })
	return r
}
