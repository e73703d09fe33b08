package main

import (
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sipanchor/relay/ng"
)

// ngAsk sends one NG command straight to an rtpengine daemon.
func ngAsk(t *testing.T, port int, d map[string]any) map[string]any {
	t.Helper()
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cookie := fmt.Sprintf("t%d", time.Now().UnixNano())
	msg, err := ng.Message(cookie, d)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	for range 3 {
		_, _ = c.Write(msg)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		_, rep, err := ng.ParseMessage(buf[:n])
		if err != nil {
			t.Fatalf("NG reply from %d: %v", port, err)
		}
		return rep
	}
	t.Fatalf("rtpengine on %d did not answer %v", port, d["command"])
	return nil
}

// hasCall reports whether an rtpengine daemon knows a call (NG query).
func (d *rtpengineDaemon) hasCall(t *testing.T, callID string) bool {
	t.Helper()
	rep := ngAsk(t, d.ngPort, map[string]any{"command": "query", "call-id": callID})
	return rep["result"] == "ok"
}

// calls lists the call-ids an rtpengine daemon holds (NG list).
func (d *rtpengineDaemon) calls(t *testing.T) []string {
	t.Helper()
	rep := ngAsk(t, d.ngPort, map[string]any{"command": "list", "limit": 100})
	var out []string
	l, _ := rep["calls"].([]any)
	for _, c := range l {
		if s, ok := c.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// savedRows counts the rows of a table for a call in sipanchor's database.
func (p *proxy) savedRows(table, callID string) int {
	p.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(p.dir, "sipanchor.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		p.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM `+table+` WHERE call_id = ?`, callID).Scan(&n); err != nil {
		return -1 // no table yet
	}
	return n
}

// TestRtpengineCallStaysOnItsNodeAcrossRestart: a call lands on node X;
// sipanchor restarts (killed, or stopped cleanly) with the weights turned
// around, so that a new call would go to node Y. The re-INVITE's offer and
// the BYE's delete must still reach X only: Y never gets the call and X
// loses it after the BYE.
func TestRtpengineCallStaysOnItsNodeAcrossRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		base    int
		restart func(p *proxy)
	}{
		{"SIGKILL", 46600, (*proxy).kill9},
		{"SIGTERM", 47200, (*proxy).stop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, y := startRtpengine(t, tc.base), startRtpengine(t, tc.base+200)
			nodeX, nodeY := fmt.Sprintf("udp:127.0.0.1:%d", x.ngPort), fmt.Sprintf("udp:127.0.0.1:%d", y.ngPort)
			p := startProxy(t, rtpengineConfig(nodeX+"=1", nodeY+"=0"))
			alice := newUA(t, "alice", "127.0.0.2", p, "")
			bob := newUA(t, "bob", "127.0.0.3", p, "")
			bob.register(600)
			aRTP, bRTP := newRTP(t, "127.0.0.2"), newRTP(t, "127.0.0.3")
			dc, _, atBob, _ := rtpCall(t, alice, bob, aRTP, bRTP, "r1")
			if port := mediaOf(t, []byte(atBob)).Port(); !x.owns(port) {
				t.Fatalf("the call went to port %d, not node X's", port)
			}
			eventually(t, 5*time.Second, func() bool { return p.savedRows("dialogs", dc.callID) == 1 }, "dialog not saved")

			tc.restart(p)
			cfg, err := os.ReadFile(p.cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			swapped := strings.Replace(strings.Replace(string(cfg), nodeX+"=1", nodeX+"=0", 1), nodeY+"=0", nodeY+"=1", 1)
			if err := os.WriteFile(p.cfgPath, []byte(swapped), 0o644); err != nil {
				t.Fatal(err)
			}
			p.start()

			// Hold with a changed SDP (new port) from the caller.
			atBob2, _ := reinvite(t, alice, dc, bob,
				strings.ReplaceAll(sdpWith(aRTP.port()+2, "a=sendonly\n"), "192.168.1.50", "127.0.0.2"),
				strings.ReplaceAll(sdpWith(bRTP.port(), "a=recvonly\n"), "192.168.1.50", "127.0.0.3"), "")
			if port := mediaOf(t, atBob2).Port(); !x.owns(port) {
				t.Errorf("after the restart the re-INVITE's offer got port %d, not node X's", port)
			}
			if got := y.calls(t); len(got) != 0 {
				t.Errorf("node Y holds calls %v: the re-offer went to the wrong node", got)
			}
			if !x.hasCall(t, dc.callID) {
				t.Errorf("node X lost the call before the BYE")
			}

			alice.request(dc, "BYE")
			bob.okTo(bob.recv("BYE", isRequest("BYE")))
			alice.recv("200 to BYE", isResponse(200, "BYE"))
			eventually(t, 5*time.Second, func() bool { return !x.hasCall(t, dc.callID) }, "node X still has the call after the BYE")
			if got := y.calls(t); len(got) != 0 {
				t.Errorf("node Y holds calls %v after the BYE", got)
			}
			eventually(t, 5*time.Second, func() bool { return p.savedRows("rtpengine_calls", dc.callID) == 0 }, "the call's node binding is still saved after the BYE")
		})
	}
}
