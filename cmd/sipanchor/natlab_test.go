package main

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"sipanchor/harness"
)

// natLab is the harness's kernel NAT (network namespaces, MASQUERADE
// --random) with the helpers these tests use to put their ua behind it.
type natLab struct {
	*harness.KernelNAT
	t      *testing.T
	public netip.Addr // where the UA sends SIP and RTP
	natOut netip.Addr // the NAT's outside address: the source sipanchor sees
	uaAddr netip.Addr // the UA's private address
}

func newNATLab(t *testing.T) *natLab {
	t.Helper()
	requireE2E(t)
	k := harness.NewKernelNAT(t, harness.KernelNATOptions{})
	return &natLab{KernelNAT: k, t: t, public: k.Public(), natOut: k.NATOut(), uaAddr: k.UAAddr()}
}

// dnatToLoopback forwards proto/port on the lab's public end to sipanchor
// on 127.0.0.1.
func (l *natLab) dnatToLoopback(proto string, port int) { l.ForwardToLoopback(proto, port) }

// in runs fn in the UA's namespace.
func (l *natLab) in(fn func()) { l.In(fn) }

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
