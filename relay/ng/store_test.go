package ng

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"sipanchor/relay"
	"sipanchor/store"
)

// TestBindingsSurviveANewClient: a call placed by one client is bound to
// the same node by the next client on the same database, and its delete
// removes the row.
func TestBindingsSurviveANewClient(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bs := NewSQLBindings(db)
	a, b := startNGServer(t, 42800), startNGServer(t, 43000)
	nodeA, nodeB := "udp:"+a.Addr().String(), "udp:"+b.Addr().String()
	client := func(wa, wb string) *Client {
		c, err := NewClient(ClientConfig{Sets: []SetConfig{{ID: 0, Nodes: []string{nodeA + "=" + wa, nodeB + "=" + wb}}},
			Timeout: time.Second, ProbeEvery: time.Hour, PollEvery: time.Hour, Bindings: bs})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := client("1", "0")
	if _, err := testOffer(c1, "kept"); err != nil {
		t.Fatal(err)
	}
	c1.Close()

	c2 := client("0", "1") // a new call would go to B now
	defer c2.Close()
	k := relay.SessionKey{CallID: "kept", FromTag: "f"}
	if pl, ok := c2.Placement(k); !ok || pl.Set != "0" || pl.Node != nodeA {
		t.Fatalf("restored placement = %+v %v, want set 0 node %q", pl, ok, nodeA)
	}
	if _, err := testOffer(c2, "kept"); err != nil {
		t.Fatal(err)
	}
	if n := c2.Nodes(); n[0].Sessions != 1 || n[1].Sessions != 0 {
		t.Errorf("re-offer after restart: %+v", n)
	}
	if err := c2.Delete(ctx, &relay.Request{Key: k}); err != nil {
		t.Fatal(err)
	}
	if got, _ := bs.Load(ctx); len(got) != 0 {
		t.Errorf("bindings after delete: %+v", got)
	}
}
