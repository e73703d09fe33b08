package main

import (
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestRestartMidCall: sipanchor restarts during a call. The media keeps
// flowing on the same ports, and the BYE afterwards reaches the other end
// and frees the relay session; the call record is written.
func TestRestartMidCall(t *testing.T) {
	p := startProxy(t, "")
	c := setupAnchoredCall(t, p)
	c.twoWay(t, 'a')
	p.stop()
	p.start()
	if h := p.health(); h["dialogs"] != 1 || h["relay_sessions"] != 1 {
		t.Fatalf("after restart: %v dialogs, %v relay sessions; want the call back", h["dialogs"], h["relay_sessions"])
	}
	c.twoWay(t, 'd') // same relay ports, both ways

	c.bob.request(c.dd, "BYE") // the callee hangs up this time
	c.alice.okTo(c.alice.recv("BYE after restart", isRequest("BYE")))
	c.bob.recv("200 to BYE", isResponse(200, "BYE"))
	p.waitIdle("after BYE")
	c.aRTP.sendTo(c.toAlice, 'z')
	c.bRTP.none('z', 200*time.Millisecond)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(p.dir, "sipanchor.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var reason, mediaJSON string
	var answered sql.NullInt64
	if !poll(3*time.Second, func() bool {
		err = db.QueryRow(`SELECT reason, answered, media FROM calls WHERE call_id = ?`, c.dc.callID).Scan(&reason, &answered, &mediaJSON)
		return err == nil
	}) {
		t.Fatalf("no call record: %v", err)
	}
	if reason != "BYE from callee" || !answered.Valid {
		t.Errorf("call record reason %q answered %v", reason, answered)
	}
	var streams []struct {
		Caller struct {
			PacketsIn uint64 `json:"packets_in"`
		} `json:"caller"`
		Callee struct {
			PacketsIn uint64 `json:"packets_in"`
		} `json:"callee"`
	}
	if err := json.Unmarshal([]byte(mediaJSON), &streams); err != nil || len(streams) != 1 || streams[0].Caller.PacketsIn == 0 || streams[0].Callee.PacketsIn == 0 {
		t.Errorf("call record media %s (%v): want packets from both legs", mediaJSON, err)
	}
}

// TestCallRecordOfFailedCall: a call that is never answered is recorded too.
func TestCallRecordOfFailedCall(t *testing.T) {
	p := startProxy(t, "")
	alice := newUA(t, "alice", "127.0.0.2", p, "")
	bob := newUA(t, "bob", "127.0.0.3", p, "")
	bob.register(600)
	aRTP := newRTP(t, "127.0.0.2")
	dc := alice.inviteSDP("sip:bob@example.test", sdpWith(aRTP.port(), ""))
	inv := bob.recv("INVITE", isRequest("INVITE")).(*sip.Request)
	bob.answer(inv, 486, "Busy Here", "b")
	alice.recv("486", isResponse(486, "INVITE"))
	db, err := sql.Open("sqlite", "file:"+filepath.Join(p.dir, "sipanchor.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var reason string
	var answered sql.NullInt64
	if !poll(3*time.Second, func() bool {
		err = db.QueryRow(`SELECT reason, answered FROM calls WHERE call_id = ?`, dc.callID).Scan(&reason, &answered)
		return err == nil
	}) {
		t.Fatalf("no call record: %v", err)
	}
	if answered.Valid || reason == "" {
		t.Errorf("failed call recorded as reason %q answered %v", reason, answered)
	}
}
