package ng

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// Nodes can also come from the shared SQLite file, like the rtpengine
// modules' database table: one row per node, reloaded on demand.
const nodesSchema = `
CREATE TABLE IF NOT EXISTS relay_nodes (
	set_id INTEGER NOT NULL,
	socket TEXT    NOT NULL, -- "udp:HOST:PORT[=WEIGHT]"
	PRIMARY KEY (set_id, socket)
)`

// LoadSets reads the relay_nodes table (creating it if needed).
func LoadSets(ctx context.Context, db *sql.DB) ([]SetConfig, error) {
	if _, err := db.ExecContext(ctx, nodesSchema); err != nil {
		return nil, fmt.Errorf("relay_nodes table: %w", err)
	}
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
