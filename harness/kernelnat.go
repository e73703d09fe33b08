package harness

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// KernelNAT is a real Linux NAT in front of a user agent, built from
// network namespaces for one test (root only):
//
//	[UA netns] UA ──veth── [NAT netns: iptables MASQUERADE] NATOut ──veth── Public [this netns]
//
// Sockets opened inside In(...) and processes from Command live in the
// UA's namespace, so their packets reach this namespace through the
// kernel's NAT with their source rewritten, as behind a home router. It is
// the same topology as the userspace NAT box, for the kernel paths: what
// the kernel's conntrack NAT does is what the UA gets. Everything is
// removed at cleanup. It needs root and the ip and iptables commands; it
// fails (never skips) without them.
type KernelNAT struct {
	t      testing.TB
	uaNS   string
	natNS  string
	hostIf string
	public netip.Addr // this namespace's end: where the UA sends SIP and RTP
	natOut netip.Addr // the NAT's outside address: the source this namespace sees
	uaAddr netip.Addr // the UA's private address
}

// KernelNATOptions shape the kernel NAT.
type KernelNATOptions struct {
	// PortPreserving uses MASQUERADE without --random: conntrack keeps the
	// UA's port when it can and filters by the exact remote (a
	// port-restricted cone, in practice). Without it, --random gives every
	// flow a random port (symmetric NAT).
	PortPreserving bool
}

// NewKernelNAT builds the namespaces, veth pairs and NAT rule.
func NewKernelNAT(t testing.TB, o KernelNATOptions) *KernelNAT {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("harness: the kernel NAT needs root (network namespaces, iptables)")
	}
	for _, cmd := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("harness: the kernel NAT needs %s (apt-get install iproute2 iptables): %v", cmd, err)
		}
	}
	id := fmt.Sprintf("%04x", rand.IntN(0x10000))
	n := 1 + rand.IntN(250)
	k := &KernelNAT{
		t: t, uaNS: "sa-ua-" + id, natNS: "sa-nat-" + id, hostIf: "sah" + id,
		public: netip.MustParseAddr(fmt.Sprintf("10.203.%d.1", n)),
		natOut: netip.MustParseAddr(fmt.Sprintf("10.203.%d.2", n)),
		uaAddr: netip.MustParseAddr(fmt.Sprintf("10.202.%d.2", n)),
	}
	t.Cleanup(k.teardown)
	inside := fmt.Sprintf("10.202.%d.1", n)
	k.run("ip", "netns", "add", k.uaNS)
	k.run("ip", "netns", "add", k.natNS)
	k.run("ip", "link", "add", "sau"+id, "netns", k.uaNS, "type", "veth", "peer", "name", "san"+id, "netns", k.natNS)
	k.run("ip", "link", "add", k.hostIf, "type", "veth", "peer", "name", "sao"+id, "netns", k.natNS)
	k.ns(k.uaNS, "ip", "link", "set", "lo", "up")
	k.ns(k.uaNS, "ip", "addr", "add", k.uaAddr.String()+"/24", "dev", "sau"+id)
	k.ns(k.uaNS, "ip", "link", "set", "sau"+id, "up")
	k.ns(k.uaNS, "ip", "route", "add", "default", "via", inside)
	k.ns(k.natNS, "ip", "link", "set", "lo", "up")
	k.ns(k.natNS, "ip", "addr", "add", inside+"/24", "dev", "san"+id)
	k.ns(k.natNS, "ip", "link", "set", "san"+id, "up")
	k.ns(k.natNS, "ip", "addr", "add", k.natOut.String()+"/24", "dev", "sao"+id)
	k.ns(k.natNS, "ip", "link", "set", "sao"+id, "up")
	k.ns(k.natNS, "ip", "route", "add", "default", "via", k.public.String())
	k.ns(k.natNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	masq := []string{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "sao" + id, "-j", "MASQUERADE"}
	if !o.PortPreserving {
		masq = append(masq, "--random")
	}
	k.ns(k.natNS, masq...)
	k.run("ip", "addr", "add", k.public.String()+"/24", "dev", k.hostIf)
	k.run("ip", "link", "set", k.hostIf, "up")
	return k
}

// Public is this namespace's address on the link to the NAT: where the
// UA sends (bind sipanchor there, or ForwardToLoopback).
func (k *KernelNAT) Public() netip.Addr { return k.public }

// NATOut is the NAT's outside address: the source address this namespace
// sees the UA's packets come from.
func (k *KernelNAT) NATOut() netip.Addr { return k.natOut }

// UAAddr is the UA's private address inside its namespace.
func (k *KernelNAT) UAAddr() netip.Addr { return k.uaAddr }

// run runs a command in this namespace; a failure fails the test.
func (k *KernelNAT) run(args ...string) {
	k.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		k.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// ns runs a command in namespace name.
func (k *KernelNAT) ns(name string, args ...string) {
	k.t.Helper()
	k.run(append([]string{"ip", "netns", "exec", name}, args...)...)
}

// Command is a process to run in the UA's namespace (a UA under test).
func (k *KernelNAT) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", k.uaNS, name}, args...)...)
}

// ForwardToLoopback sends what arrives on this namespace's end for
// proto/port to 127.0.0.1:port, as a port forward to a service bound on
// loopback does (so a sipanchor listening on 127.0.0.1 is reachable).
func (k *KernelNAT) ForwardToLoopback(proto string, port int) {
	k.t.Helper()
	k.run("sysctl", "-qw", "net.ipv4.conf."+k.hostIf+".route_localnet=1")
	rule := []string{"PREROUTING", "-i", k.hostIf, "-p", proto, "--dport", fmt.Sprint(port), "-j", "DNAT", "--to-destination", fmt.Sprintf("127.0.0.1:%d", port)}
	k.run(append([]string{"iptables", "-t", "nat", "-A"}, rule...)...)
	k.t.Cleanup(func() {
		_ = exec.Command("iptables", append([]string{"-t", "nat", "-D"}, rule...)...).Run()
	})
}

// In runs fn with the calling thread in the UA's namespace: sockets opened
// by fn belong to that namespace for their whole life.
func (k *KernelNAT) In(fn func()) {
	k.t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		k.t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + k.uaNS)
	if err != nil {
		runtime.UnlockOSThread()
		k.t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		k.t.Fatal(err)
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

func (k *KernelNAT) teardown() {
	// Deleting a namespace deletes its veth ends, and so their peers.
	_ = exec.Command("ip", "netns", "del", k.uaNS).Run()
	_ = exec.Command("ip", "netns", "del", k.natNS).Run()
	_ = exec.Command("ip", "link", "del", k.hostIf).Run()
}
