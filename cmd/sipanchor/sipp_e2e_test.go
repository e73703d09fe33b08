package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// sipp runs Debian's SIPp (package sip-tester). The test fails, never
// skips, without it: .ci/run installs it.
func sippCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatal("sipp not found: install Debian's sip-tester (bash .ci/run does)")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	return cmd
}

// TestSIPpCallsThroughProxy: a SIPp UAS registers, then a SIPp UAC places
// calls to it through sipanchor; both must finish every call cleanly.
func TestSIPpCallsThroughProxy(t *testing.T) {
	p := startProxy(t, "")
	scen, _ := filepath.Abs("../../testdata/sipp")
	proxy := fmt.Sprintf("127.0.0.1:%d", p.port)
	uasPort, uacPort := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	const calls = "20"

	reg := sippCmd(t, "-sf", filepath.Join(scen, "register.xml"), proxy, "-s", "sippuas",
		"-i", "127.0.0.6", "-p", uasPort, "-m", "1", "-timeout", "10s", "-nostdin")
	if out, err := reg.CombinedOutput(); err != nil {
		t.Fatalf("sipp register: %v\n%s", err, tail(string(out), 30))
	}

	var uasOut bytes.Buffer
	uas := sippCmd(t, "-sf", filepath.Join(scen, "uas.xml"), "-i", "127.0.0.6", "-p", uasPort,
		"-m", calls, "-timeout", "60s", "-nostdin")
	uas.Stdout, uas.Stderr = &uasOut, &uasOut
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	uasDone := make(chan error, 1)
	go func() { uasDone <- uas.Wait() }()
	time.Sleep(300 * time.Millisecond)

	uac := sippCmd(t, "-sf", filepath.Join(scen, "uac.xml"), proxy, "-s", "sippuas",
		"-i", "127.0.0.7", "-p", uacPort, "-m", calls, "-r", "10", "-timeout", "60s", "-nostdin")
	if out, err := uac.CombinedOutput(); err != nil {
		uas.Process.Kill()
		t.Fatalf("sipp uac: %v\n%s", err, tail(string(out), 40))
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
