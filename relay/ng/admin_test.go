package ng

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"sipanchor/relay"
)

// fakeNode is an NG peer that answers pings only while alive.
type fakeNode struct {
	conn  *net.UDPConn
	alive atomic.Bool
	pings atomic.Int64 // answered
}

func startFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{conn: conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			cookie, d, err := ParseMessage(buf[:n])
			if err != nil || !f.alive.Load() || d["command"] != "ping" {
				continue
			}
			msg, _ := Message(cookie, map[string]any{"result": "pong"})
			_, _ = conn.WriteToUDPAddrPort(msg, src)
			f.pings.Add(1)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return f
}

func (f *fakeNode) name() string { return "udp:" + f.conn.LocalAddr().String() }

// TestAdminDisableOutlivesTheProber: a node found dead is pinged back into
// service when it answers; a node the control plane disabled stays
// disabled, even if it was also found dead and then answers.
func TestAdminDisableOutlivesTheProber(t *testing.T) {
	a := startFakeNode(t)
	b := startNGServer(t, 43200)
	c, err := NewClient(ClientConfig{Sets: []SetConfig{{ID: 0, Nodes: []string{a.name() + "=1", "udp:" + b.Addr().String() + "=0"}}},
		Timeout: 50 * time.Millisecond, Retries: 1, DisableFor: time.Minute, ProbeEvery: 20 * time.Millisecond, PollEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := testOffer(c, "x1"); err != nil { // a is silent: found dead, the call fails over to b
		t.Fatal(err)
	}
	if n := c.Nodes(); n[0].Enabled {
		t.Fatalf("silent node still enabled: %+v", n)
	}
	if err := c.SetEnabled(a.name(), false); err != nil {
		t.Fatal(err)
	}
	a.alive.Store(true)
	waitFor(t, 2*time.Second, func() bool { return a.pings.Load() >= 1 && !c.Nodes()[0].Down }, "the prober never found the node answering")
	if n := c.Nodes(); n[0].Enabled {
		t.Errorf("the prober enabled a node the admin disabled: %+v", n)
	}
	if _, err := testOffer(c, "x2"); err != nil {
		t.Fatal(err)
	}
	if n := c.Nodes(); n[0].Sessions != 0 {
		t.Errorf("a new call went to the admin-disabled node: %+v", n)
	}
	// Enabled again by the admin: it takes calls (weight 1 against 0).
	if err := c.SetEnabled("udp:127.0.0.1:1", true); !errors.Is(err, relay.ErrUnknownNode) {
		t.Errorf("SetEnabled of an unknown node: %v", err)
	}
	_ = c.SetEnabled(a.name(), true)
	if n := c.Nodes(); !n[0].Enabled {
		t.Errorf("admin enable did not take: %+v", n)
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
