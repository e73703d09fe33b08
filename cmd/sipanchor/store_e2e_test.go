package main

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStoreFromOlderSipanchor: a database written before schema versions
// (tables only, no schema_version) is upgraded in place at start; its
// bindings are served as before.
func TestStoreFromOlderSipanchor(t *testing.T) {
	p := startProxy(t, "")
	p.stop()
	path := filepath.Join(p.dir, "sipanchor.db")
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	// The location and users tables as sipanchor created them then.
	_, err = db.Exec(fmt.Sprintf(`
CREATE TABLE location (aor TEXT NOT NULL, contact TEXT NOT NULL, expires INTEGER NOT NULL, q REAL NOT NULL,
	call_id TEXT NOT NULL, cseq INTEGER NOT NULL, received TEXT NOT NULL, transport TEXT NOT NULL,
	local TEXT NOT NULL, user_agent TEXT NOT NULL, nat INTEGER NOT NULL, PRIMARY KEY (aor, contact));
CREATE TABLE users (username TEXT NOT NULL, domain TEXT NOT NULL, realm TEXT NOT NULL,
	ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL, PRIMARY KEY (username, domain));
INSERT INTO location VALUES ('bob@example.test', 'sip:bob@127.0.0.3:5060', %d, 1, 'old', 1,
	'127.0.0.3:5060', 'udp', 'udp:127.0.0.1:%d', 'old-ua', 0);
INSERT INTO users VALUES ('bob', 'example.test', 'example.test', 'x', 'y');`, time.Now().Add(time.Hour).Unix(), p.port))
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	p.start()
	regs := p.registrations()
	if len(regs) != 1 || !strings.Contains(fmt.Sprint(regs[0]), "bob@127.0.0.3") {
		t.Errorf("registrations after the upgrade = %v, want bob's old binding", regs)
	}
	out, err := exec.Command(binPath, "ctl", "user", "list", "-c", p.cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "bob") {
		t.Errorf("ctl user list after the upgrade: %v\n%s", err, out)
	}
	if v := schemaVersion(t, path); v != 2 {
		t.Errorf("schema version after the upgrade = %d, want 2", v)
	}
}

// TestStoreFromNewerSipanchorRefused: a database whose schema version is
// above what this binary knows is left alone: serve and ctl say why and
// exit non-zero.
func TestStoreFromNewerSipanchorRefused(t *testing.T) {
	p := startProxy(t, "")
	p.stop()
	path := filepath.Join(p.dir, "sipanchor.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO schema_version (version, name, applied) VALUES (99, 'from the future', 0)`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	const want = "store was written by a newer sipanchor (schema 99, this one knows 2)"
	for _, args := range [][]string{{"serve", "-c", p.cfgPath}, {"ctl", "user", "list", "-c", p.cfgPath}} {
		cmd := exec.Command(binPath, args...)
		done := make(chan struct{})
		var out []byte
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("%s did not exit on a newer store\n%s", args[0], out)
		}
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("%s on a newer store: exit %v, output:\n%s\nwant a non-zero exit and %q", args[0], err, out, want)
		}
	}
	if v := schemaVersion(t, path); v != 99 {
		t.Errorf("schema version = %d after the refusal, want 99 untouched", v)
	}
}

func schemaVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow(`SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}
