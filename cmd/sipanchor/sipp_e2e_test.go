package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sipp runs Debian's SIPp (package sip-tester). The test fails, never
// skips, without it: .ci/run installs it.
func sippCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	requireE2E(t)
	bin, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatal("sipp not found: install Debian's sip-tester (bash .ci/run does)")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	return cmd
}

// sippCalls registers a SIPp UAS as service@ through p, then has a SIPp UAC
// place calls to it with uacScenario; both must finish every call cleanly.
// uasArgs and uacArgs are added to each SIPp's command line.
func sippCalls(t *testing.T, p *proxy, service string, calls int, uasArgs []string, uacScenario string, uacArgs []string) {
	t.Helper()
	sippCallsAtLeast(t, p, service, calls, calls, uasArgs, uacScenario, uacArgs)
}

// sippCallsAtLeast is sippCalls where minOK of the calls completing is
// enough (the others must have failed, not hung): for tests under load,
// whose bar is a share of calls.
func sippCallsAtLeast(t *testing.T, p *proxy, service string, calls, minOK int, uasArgs []string, uacScenario string, uacArgs []string) {
	t.Helper()
	scen, _ := filepath.Abs("../../testdata/sipp")
	proxy := fmt.Sprintf("127.0.0.1:%d", p.port)
	uasPortN := freePort(t)
	uacPort := strconv.Itoa(freePort(t))
	n := strconv.Itoa(calls)

	uas, uasOut, uasDone := sippUAS(t, p, service, "127.0.0.6", uasPortN, "uas.xml", append([]string{"-m", n}, uasArgs...)...)

	uac := sippCmd(t, append([]string{"-sf", filepath.Join(scen, uacScenario), proxy, "-s", service,
		"-i", "127.0.0.7", "-p", uacPort, "-m", n, "-timeout", "60s", "-nostdin"}, uacArgs...)...)
	out, err := uac.CombinedOutput()
	if err != nil {
		ok := sippCount(string(out), "Successful call")
		if ok < minOK || ok+sippCount(string(out), "Failed call") != calls {
			uas.Process.Kill()
			t.Fatalf("sipp uac: %v (%d of %d calls completed, want %d)\n%s", err, ok, calls, minOK, tail(string(out), 40))
		}
		t.Logf("sipp uac: %d of %d calls completed (at least %d wanted)\n%s", ok, calls, minOK, tail(string(out), 40))
		// The UAS waits for calls that never reached it.
		uas.Process.Kill()
		<-uasDone
		return
	}
	select {
	case err := <-uasDone:
		if err != nil {
			t.Fatalf("sipp uas: %v\n%s", err, tail(uasOut.String(), 40))
		}
	case <-time.After(20 * time.Second):
		uas.Process.Kill()
		t.Fatalf("sipp uas did not finish\n%s", tail(uasOut.String(), 40))
	}
}

// sippUAS registers service@ at ip:port through p with SIPp, then runs a
// SIPp UAS with scenario (of testdata/sipp) there in the background, ready
// (its socket bound) when this returns.
func sippUAS(t *testing.T, p *proxy, service, ip string, port int, scenario string, args ...string) (*exec.Cmd, *syncBuffer, chan error) {
	t.Helper()
	scen, _ := filepath.Abs("../../testdata/sipp")
	reg := sippCmd(t, "-sf", filepath.Join(scen, "register.xml"), fmt.Sprintf("127.0.0.1:%d", p.port), "-s", service,
		"-i", ip, "-p", strconv.Itoa(port), "-m", "1", "-timeout", "10s", "-nostdin")
	if out, err := reg.CombinedOutput(); err != nil {
		t.Fatalf("sipp register: %v\n%s", err, tail(string(out), 30))
	}
	out := &syncBuffer{}
	uas := sippCmd(t, append([]string{"-sf", filepath.Join(scen, scenario), "-i", ip, "-p", strconv.Itoa(port),
		"-timeout", "60s", "-nostdin"}, args...)...)
	uas.Stdout, uas.Stderr = out, out
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- uas.Wait() }()
	t.Cleanup(func() { _ = uas.Process.Kill() }) // "already finished" when it has
	addr := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
	eventually(t, 10*time.Second, func() bool { return udpBound(t, addr) },
		"sipp uas never bound %s:\n%s", addr, out)
	return uas, out, done
}

// sippCount reads a cumulative counter line of SIPp's final statistics
// ("Successful call", "Failed call"), or -1.
func sippCount(out, what string) int {
	n := -1
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Split(l, "|"); len(f) >= 3 && strings.TrimSpace(f[0]) == what {
			if v, err := strconv.Atoi(strings.TrimSpace(f[2])); err == nil {
				n = v
			}
		}
	}
	return n
}

// TestSIPpCallsThroughProxy: a SIPp UAS registers, then a SIPp UAC places
// calls to it through sipanchor; both must finish every call cleanly.
func TestSIPpCallsThroughProxy(t *testing.T) {
	p := startProxy(t, "")
	sippCalls(t, p, "sippuas", 20, nil, "uac.xml", []string{"-r", "10", "-d", "200"})
}

// TestSIPpCallWithRTP: two real soft clients, SIPp playing G.711 from a
// pcap and SIPp echoing RTP, talk through sipanchor; every call's record
// shows media relayed from both legs.
func TestSIPpCallWithRTP(t *testing.T) {
	p := startProxy(t, "")
	const calls = 3
	sippCalls(t, p, "echo", calls, []string{"-rtp_echo", "-mp", strconv.Itoa(freePort(t))},
		"uac_rtp.xml", []string{"-mp", strconv.Itoa(freePort(t)), "-l", "1"})
	p.waitIdle("after the SIPp calls")

	db, err := sql.Open("sqlite", "file:"+filepath.Join(p.dir, "sipanchor.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var recorded int
	if !poll(3*time.Second, func() bool {
		_ = db.QueryRow(`SELECT count(*) FROM calls WHERE answered IS NOT NULL`).Scan(&recorded)
		return recorded >= calls
	}) {
		t.Fatalf("%d answered calls recorded, want %d", recorded, calls)
	}
	rows, err := db.Query(`SELECT media FROM calls WHERE answered IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			t.Fatal(err)
		}
		var streams []struct {
			Caller struct {
				PacketsIn  uint64 `json:"packets_in"`
				PacketsOut uint64 `json:"packets_out"`
			} `json:"caller"`
			Callee struct {
				PacketsIn uint64 `json:"packets_in"`
			} `json:"callee"`
		}
		if err := json.Unmarshal([]byte(m), &streams); err != nil || len(streams) != 1 {
			t.Fatalf("call record media %q: %v", m, err)
		}
		s := streams[0]
		if s.Caller.PacketsIn < 20 || s.Callee.PacketsIn < 20 || s.Caller.PacketsOut < 20 {
			t.Errorf("call %d: caller sent %d, callee echoed %d, caller got %d packets: want media both ways",
				n, s.Caller.PacketsIn, s.Callee.PacketsIn, s.Caller.PacketsOut)
		}
		n++
	}
	if n != calls {
		t.Errorf("%d answered calls recorded, want %d", n, calls)
	}
}
