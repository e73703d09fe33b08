package dialog

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"sipanchor/media"
	"sipanchor/relay"
	"sipanchor/store"
)

// restoreEngine is the builtin engine on ports of its own (relay state
// saved with a dialog is its JSON).
func restoreEngine(tb testing.TB) *relay.Builtin {
	tb.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	rl, err := media.NewRelay(media.Config{PortMin: 44100, PortMax: 44139, Bind: lo, Advertise: lo, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rl.Close() })
	return relay.NewBuiltin(rl)
}

func openStore(tb testing.TB) *sql.DB {
	tb.Helper()
	db, err := store.Open(context.Background(), filepath.Join(tb.TempDir(), "sipanchor.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func storeManager(e relay.Engine, db *sql.DB) *Manager {
	return NewManager(e, Config{Engage: EngageAlways, Caller: relay.DefaultLegFlags(), Callee: relay.DefaultLegFlags(), DB: db})
}

const (
	offerSDP  = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	answerSDP = "v=0\r\no=- 2 2 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
)

// savedRows are the dialog rows real calls leave in the store: one
// ringing on two branches, one answered with a re-INVITE in flight.
func savedRows(tb testing.TB, e *relay.Builtin) [][3]string {
	tb.Helper()
	db := openStore(tb)
	m := storeManager(e, db)
	invite := func(callID, tag string) *Dialog {
		return m.Begin(InviteInfo{CallID: callID, FromTag: tag, FromURI: "<sip:alice@example.test>", ToURI: "<sip:bob@example.test>",
			Contact: "sip:alice@192.168.1.5;alias=127.0.0.2~5060~udp", CSeq: 1, SDP: []byte(offerSDP),
			Source: netip.MustParseAddrPort("127.0.0.2:5060"), User: "alice@example.test", CallerRoutes: []string{"<sip:127.0.0.9;lr>"}})
	}
	ringing := invite("ringing", "fr")
	for _, b := range []string{"z9hG4bKr1", "z9hG4bKr2"} {
		if _, err := ringing.OfferBranch(ctx, b, BranchTarget{}, []byte(offerSDP)); err != nil {
			tb.Fatal(err)
		}
	}
	answered := invite("answered", "fa")
	if _, err := answered.OfferBranch(ctx, "z9hG4bKa1", BranchTarget{}, []byte(offerSDP)); err != nil {
		tb.Fatal(err)
	}
	if _, err := answered.OnInitialResponse(ctx, InitialResponse{Branch: "z9hG4bKa1", Code: 200, ToTag: "ta",
		Source: netip.MustParseAddrPort("127.0.0.3:5060"), SDP: []byte(answerSDP), Offer: []byte(offerSDP),
		Callee: Party{URI: "<sip:bob@example.test>", Tag: "ta", Contact: "sip:bob@127.0.0.3:5060"}}); err != nil {
		tb.Fatal(err)
	}
	if _, _, err := answered.Request(ctx, relay.Caller, "ta", "INVITE", 2, []byte(offerSDP)); err != nil {
		tb.Fatal(err)
	}
	m.Close() // what was queued is written
	rows, err := db.Query(`SELECT call_id, from_tag, data FROM dialogs ORDER BY call_id`)
	if err != nil {
		tb.Fatal(err)
	}
	var out [][3]string
	for rows.Next() {
		var r [3]string
		if err := rows.Scan(&r[0], &r[1], &r[2]); err != nil {
			tb.Fatal(err)
		}
		out = append(out, r)
	}
	rows.Close()
	for _, d := range m.All() {
		m.Terminate(d, "seeds taken")
	}
	m.Shutdown()
	m.Wait()
	if len(out) != 2 {
		tb.Fatalf("%d dialogs saved, want the ringing and the answered one", len(out))
	}
	return out
}

// FuzzRestoreRow restores one stored dialog row (its key columns and its
// JSON, with the relay state inside) as Load does at a restart, seeded
// with rows real calls saved. Properties: a row is restored whole or
// skipped with an errBadRecord saying why — a restored dialog is live
// under the row's own key, a skipped one holds nothing — and once the
// restored dialog ends nothing of it is left: no relay session, no port,
// no count against the caller's limits.
func FuzzRestoreRow(f *testing.F) {
	for _, r := range savedRows(f, restoreEngine(f)) {
		f.Add(r[0], r[1], r[2])
	}
	f.Fuzz(func(t *testing.T, callID, fromTag, data string) {
		e := restoreEngine(t) // each run its own: what one leaves cannot fail the next
		m := storeManager(e, nil)
		if err := m.restoreRow(ctx, callID, fromTag, data); err != nil {
			if !errors.Is(err, errBadRecord) {
				t.Fatalf("row skipped without saying why: %v", err)
			}
			checkNothingHeld(t, m, e, "after the row was skipped")
			return
		}
		if _, ok := m.Get(callID, fromTag); !ok || m.Count() != 1 {
			t.Fatalf("row %q/%q restored as %d dialogs, under other keys", callID, fromTag, m.Count())
		}
		for _, d := range m.All() {
			m.Terminate(d, "fuzz")
		}
		m.Shutdown()
		m.Wait()
		checkNothingHeld(t, m, e, "after the restored dialog ended")
	})
}

// TestLoadSkipsBadRows: at a restart the rows that cannot be restored
// whole (no dialog in them, or another dialog's) are skipped and the
// others restored.
func TestLoadSkipsBadRows(t *testing.T) {
	e := restoreEngine(t)
	good := savedRows(t, e)[0]
	db := openStore(t)
	for _, r := range [][3]string{good, {"c1", "f1", "{}"}, {"c2", "f2", "null"}, {"c3", "f3", strings.Replace(good[2], good[0], "c3", 1)}} {
		if _, err := db.Exec(`INSERT INTO dialogs (call_id, from_tag, data) VALUES (?, ?, ?)`, r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
	m := storeManager(e, db)
	defer m.Close()
	n, err := m.Load(ctx)
	if _, ok := m.Get(good[0], good[1]); err != nil || n != 1 || m.Count() != 1 || !ok {
		t.Fatalf("Load: %d restored, %d live, %v; want only %s", n, m.Count(), err, good[0])
	}
	for _, d := range m.All() {
		m.Terminate(d, "test")
	}
}

func checkNothingHeld(t *testing.T, m *Manager, e *relay.Builtin, when string) {
	t.Helper()
	m.mu.Lock()
	dialogs, counts := len(m.dialogs), len(m.counts)
	m.mu.Unlock()
	used, _ := e.PortPairs()
	if dialogs != 0 || counts != 0 || used != 0 || e.Nodes()[0].Sessions != 0 {
		t.Fatalf("%s: %d dialogs, %d counts, %d port pairs, %d relay sessions held", when, dialogs, counts, used, e.Nodes()[0].Sessions)
	}
}
