package ng

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// The NG client's tables in the shared SQLite file (package store owns
// them):
//   - relay_nodes: nodes can come from the database, like the rtpengine
//     modules' table: one row per node, reloaded on demand;
//   - rtpengine_calls: which node holds each call, so that a restarted
//     sipanchor sends a call's re-offers and its delete to that node.

// LoadSets reads the relay_nodes table.
func LoadSets(ctx context.Context, db *sql.DB) ([]SetConfig, error) {
	rows, err := db.QueryContext(ctx, `SELECT set_id, socket FROM relay_nodes ORDER BY set_id, socket`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byID := map[int]*SetConfig{}
	var ids []int
	for rows.Next() {
		var id int
		var sock string
		if err := rows.Scan(&id, &sock); err != nil {
			return nil, err
		}
		if _, err := ParseNode(sock); err != nil {
			return nil, fmt.Errorf("relay_nodes row (%d, %q): %w", id, sock, err)
		}
		if byID[id] == nil {
			byID[id] = &SetConfig{ID: id}
			ids = append(ids, id)
		}
		byID[id].Nodes = append(byID[id].Nodes, sock)
	}
	out := make([]SetConfig, 0, len(ids))
	for _, id := range ids {
		out = append(out, *byID[id])
	}
	return out, rows.Err()
}

// SQLBindings keeps the client's call bindings in the rtpengine_calls table.
type SQLBindings struct{ db *sql.DB }

var _ BindingStore = (*SQLBindings)(nil)

// NewSQLBindings keeps the bindings in db, a store opened with store.Open.
func NewSQLBindings(db *sql.DB) *SQLBindings {
	return &SQLBindings{db: db}
}

func (s *SQLBindings) Save(ctx context.Context, b Binding) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO rtpengine_calls (call_id, from_tag, set_id, node) VALUES (?, ?, ?, ?)`,
		b.CallID, b.FromTag, b.Set, b.Node)
	return err
}

func (s *SQLBindings) Remove(ctx context.Context, callID, fromTag string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM rtpengine_calls WHERE call_id = ? AND from_tag = ?`, callID, fromTag)
	return err
}

func (s *SQLBindings) Load(ctx context.Context) ([]Binding, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT call_id, from_tag, set_id, node FROM rtpengine_calls`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Binding
	for rows.Next() {
		var b Binding
		if err := rows.Scan(&b.CallID, &b.FromTag, &b.Set, &b.Node); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// MergeSets adds b's nodes to a's sets (a node listed twice counts once).
func MergeSets(a, b []SetConfig) []SetConfig {
	out := slices.Clone(a)
	for _, sb := range b {
		i := slices.IndexFunc(out, func(s SetConfig) bool { return s.ID == sb.ID })
		if i < 0 {
			out = append(out, SetConfig{ID: sb.ID, Nodes: slices.Clone(sb.Nodes)})
			continue
		}
		out[i].Nodes = slices.Clone(out[i].Nodes)
		for _, n := range sb.Nodes {
			if !slices.Contains(out[i].Nodes, n) {
				out[i].Nodes = append(out[i].Nodes, n)
			}
		}
	}
	return out
}
