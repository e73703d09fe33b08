package sip

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"sipanchor/store"
)

func openTestLocation(t *testing.T) (*Location, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sipanchor.db")
	db, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	loc, err := OpenLocation(context.Background(), db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return loc, path
}

func addBinding(aor, contact string, now time.Time) func([]*Binding) ([]*Binding, error) {
	return func(bs []*Binding) ([]*Binding, error) {
		return append(bs, &Binding{AOR: aor, Contact: contact, Expires: now.Add(time.Hour), Q: 1,
			CallID: "c-" + aor, CSeq: 1, Received: netip.MustParseAddrPort("127.0.0.3:5060"), Transport: "udp"}), nil
	}
}

// holdWriteLock is another process holding the database's write lock (an
// open write transaction) until release, which is safe to call twice.
// other stays usable after release.
func holdWriteLock(t *testing.T, path string) (other *sql.DB, release func()) {
	t.Helper()
	ctx := context.Background()
	other, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	locked := true
	release = func() {
		if locked {
			locked = false
			if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
				t.Error(err)
			}
			conn.Close() // other has one connection: give it back
		}
	}
	t.Cleanup(release)
	if _, err := conn.ExecContext(ctx, `INSERT INTO users VALUES ('x', 'example.test', 'example.test', 'a', 'b')`); err != nil {
		t.Fatal(err)
	}
	return other, release
}

// TestLookupDoesNotWaitForAnotherAORsWrite: a REGISTER whose SQLite write
// waits for the database (another writer holds it: a ctl, a checkpoint, a
// busy disk) must not hold up the INVITEs looking up other AORs. When the
// database is free again the REGISTER completes, durable and visible.
func TestLookupDoesNotWaitForAnotherAORsWrite(t *testing.T) {
	ctx := context.Background()
	loc, path := openTestLocation(t)
	now := time.Now()
	if _, err := loc.update(ctx, "bob@example.test", addBinding("bob@example.test", "sip:bob@127.0.0.3", now)); err != nil {
		t.Fatal(err)
	}

	other, release := holdWriteLock(t, path)
	defer release()

	// alice's REGISTER: its write now waits on busy_timeout.
	called := make(chan struct{})
	updated := make(chan error, 1)
	go func() {
		_, err := loc.update(ctx, "alice@example.test", func(bs []*Binding) ([]*Binding, error) {
			close(called)
			return addBinding("alice@example.test", "sip:alice@127.0.0.2", now)(bs)
		})
		updated <- err
	}()
	<-called

	// An INVITE to bob meanwhile.
	looked := make(chan []Binding, 1)
	go func() { looked <- loc.Lookup("bob@example.test", now) }()
	select {
	case bs := <-looked:
		if len(bs) != 1 {
			t.Errorf("Lookup(bob) = %v, want his binding", bs)
		}
	case <-time.After(100 * time.Millisecond):
		t.Fatal("Lookup of another AOR blocked while a REGISTER waited for the database")
	}
	select {
	case err := <-updated:
		t.Fatalf("REGISTER completed while another writer held the database: %v", err)
	default:
	}
	if bs := loc.Lookup("alice@example.test", now); len(bs) != 0 {
		t.Errorf("alice visible before her write is durable: %v", bs)
	}

	release()
	select {
	case err := <-updated:
		if err != nil {
			t.Fatalf("REGISTER after the database was released: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("REGISTER did not complete after the database was released")
	}
	if bs := loc.Lookup("alice@example.test", now); len(bs) != 1 {
		t.Errorf("Lookup(alice) after her REGISTER = %v", bs)
	}
	var n int
	if err := other.QueryRowContext(ctx, `SELECT count(*) FROM location WHERE aor = 'alice@example.test'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("alice's rows in the database = %d (%v), want 1", n, err)
	}
}

// TestKeepaliveCountSurvivesAWrite: an unanswered keepalive counted while
// a write of the same AOR waits for the database is still counted after
// the write (the binding it kept carries its failures).
func TestKeepaliveCountSurvivesAWrite(t *testing.T) {
	ctx := context.Background()
	loc, path := openTestLocation(t)
	now := time.Now()
	const aor, contact = "alice@example.test", "sip:alice@127.0.0.2"
	if _, err := loc.update(ctx, aor, addBinding(aor, contact, now)); err != nil {
		t.Fatal(err)
	}
	_, release := holdWriteLock(t, path)
	called := make(chan struct{})
	updated := make(chan error, 1)
	go func() {
		// A second contact registers; the first is kept as it was.
		_, err := loc.update(ctx, aor, func(bs []*Binding) ([]*Binding, error) {
			close(called)
			return addBinding(aor, "sip:alice@127.0.0.9", now)(bs)
		})
		updated <- err
	}()
	<-called
	if n := loc.keepaliveResult(aor, contact, false); n != 1 {
		t.Fatalf("first unanswered keepalive: %d in a row, want 1", n)
	}
	release()
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	if n := loc.keepaliveResult(aor, contact, false); n != 2 {
		t.Errorf("second unanswered keepalive after the write: %d in a row, want 2", n)
	}
}

// TestHasFlow: a binding holds the flow (transport and exact source) its
// REGISTER came over while it lives, across a restart, and not once it
// expired or moved to another connection.
func TestHasFlow(t *testing.T) {
	ctx := context.Background()
	loc, path := openTestLocation(t)
	now := time.Now()
	conn1 := netip.MustParseAddrPort("127.0.0.4:40001")
	conn2 := netip.MustParseAddrPort("127.0.0.4:40002")
	bind := func(from netip.AddrPort, expires time.Time) func([]*Binding) ([]*Binding, error) {
		return func([]*Binding) ([]*Binding, error) {
			return []*Binding{{AOR: "carol@example.test", Contact: "sip:carol@10.1.2.3;transport=tcp", Expires: expires, Q: 1,
				CallID: "c", CSeq: 1, Received: from, Transport: "tcp"}}, nil
		}
	}
	if _, err := loc.update(ctx, "carol@example.test", bind(conn1, now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if !loc.HasFlow("tcp", conn1) || !loc.HasFlow("tcp", netip.MustParseAddrPort("[::ffff:127.0.0.4]:40001")) {
		t.Error("the binding's connection is not held")
	}
	if loc.HasFlow("udp", conn1) || loc.HasFlow("tcp", conn2) {
		t.Error("another transport or connection is held")
	}
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	restarted, err := OpenLocation(ctx, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !restarted.HasFlow("tcp", conn1) {
		t.Error("a binding loaded at start does not hold its flow")
	}
	// Re-registered over a new connection: only that one is held.
	if _, err := loc.update(ctx, "carol@example.test", bind(conn2, now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if loc.HasFlow("tcp", conn1) || !loc.HasFlow("tcp", conn2) {
		t.Error("after re-registering over another connection: the old one held, or the new one not")
	}
	if _, err := loc.update(ctx, "carol@example.test", bind(conn2, now.Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	if _, err := loc.Expire(ctx, now); err != nil {
		t.Fatal(err)
	}
	if loc.HasFlow("tcp", conn2) {
		t.Error("an expired binding still holds its connection")
	}
}
