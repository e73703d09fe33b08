package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestNATCommand runs `sipanchor nat` in-process with a --server: a
// datagram from an inside host to the view it prints reaches the server
// from the public address; SIGTERM (here: its context) stops it cleanly.
func TestNATCommand(t *testing.T) {
	base := fmt.Sprintf("127.%d.%d.", 10+rand.IntN(90), 10+rand.IntN(90))
	server, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(base + "11")})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- runNAT(ctx, []string{"--type", "symmetric", "--inside", base + "2," + base + "3", "--public", base + "60",
			"--timeout", "30s", "--server", server.LocalAddr().String()}, &stdout, &stderr)
	}()
	line := regexp.MustCompile(`inside hosts reach (\S+) at (\S+)\n`)
	var m []string
	eventually(t, 5*time.Second, func() bool {
		m = line.FindStringSubmatch(stdout.String())
		return m != nil
	}, "no view line printed; stdout %q, stderr %q", &stdout, &stderr)
	if m[1] != server.LocalAddr().String() {
		t.Errorf("the line names %s, want the server %s", m[1], server.LocalAddr())
	}
	inside, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(base + "2")})
	if err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if _, err := inside.WriteToUDPAddrPort([]byte("hello"), netip.MustParseAddrPort(m[2])); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_ = server.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, src, err := server.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "hello" || src.Addr().String() != base+"60" {
		t.Fatalf("the server got %q from %v (%v), want \"hello\" from the public address %s60", buf[:n], src, err, base)
	}
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d, stderr:\n%s", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sipanchor nat did not stop")
	}
}

// TestNATCommandBadFlags: a mistake in the flags is named, with exit 2.
func TestNATCommandBadFlags(t *testing.T) {
	good := []string{"--type", "full-cone", "--inside", "127.0.0.2", "--public", "127.0.0.60"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no type", []string{"--inside", "127.0.0.2", "--public", "127.0.0.60"}, "--type, --inside and --public are required"},
		{"bad type", []string{"--type", "cone", "--inside", "127.0.0.2", "--public", "127.0.0.60"}, `--type: nat config: unknown NAT type "cone"`},
		{"bad inside", []string{"--type", "symmetric", "--inside", "127.0.0.2,x", "--public", "127.0.0.60"}, "--inside:"},
		{"bad server", append(good, "--server", "127.0.0.1"), `invalid value "127.0.0.1" for flag -server`},
		{"bad view", append(good, "--view", "127.0.0.0/24"), "view: 127.0.0.0/24 contains"},
		{"bad timeout", append(good, "--timeout", "soon"), `invalid value "soon" for flag -timeout`},
		{"unknown flag", append(good, "--nat-pmp"), "flag provided but not defined: -nat-pmp"},
		{"argument", append(good, "extra"), `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(append([]string{"nat"}, tc.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}
