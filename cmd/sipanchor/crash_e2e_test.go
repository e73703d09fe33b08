package main

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// kill9 ends sipanchor with SIGKILL: nothing is flushed, nothing closed.
func (p *proxy) kill9() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatal(err)
	}
	<-p.done
	p.cmd = nil
}

// savedDialogs counts the dialogs in the store file.
func (p *proxy) savedDialogs() int {
	p.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(p.dir, "sipanchor.db")+"?mode=ro")
	if err != nil {
		p.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM dialogs`).Scan(&n); err != nil {
		return 0 // not created yet
	}
	return n
}

// TestLifetimeSurvivesKill9: relay.lifetime still ends a call whose
// sipanchor was killed (-9) and restarted mid-call: both ends get their
// BYE when the lifetime, counted from the answer, runs out.
func TestLifetimeSurvivesKill9(t *testing.T) {
	p := startProxy(t, "[relay]\nlifetime = \"3s\"\n")
	c := setupAnchoredCall(t, p)
	answered := time.Now()
	c.twoWay(t, 'a')
	eventually(t, 2*time.Second, func() bool { return p.savedDialogs() == 1 }, "the answered call was never saved")
	p.kill9()
	p.start()
	for _, u := range []*ua{c.alice, c.bob} {
		u.okTo(u.recv("BYE at the end of the lifetime", isRequest("BYE")))
	}
	// answered is read after the 200 reached alice; sipanchor counts from
	// when it passed through, a little earlier.
	if took := time.Since(answered); took < 2900*time.Millisecond || took > 5*time.Second {
		t.Errorf("BYEs %v after the answer, want the 3 s lifetime", took)
	}
	// Logged once the BYEs' 200s are back: after the UAs sent them.
	eventually(t, 2*time.Second, func() bool { return len(p.logLines("dialog lifetime reached")) > 0 }, "no log line for the lifetime")
}
