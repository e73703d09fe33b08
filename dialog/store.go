package dialog

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/netip"
	"time"

	"sipanchor/relay"
)

// The dialog layer uses two tables of the store (package store owns them):
//   - dialogs: each confirmed dialog, rewritten when its state changes, so
//     that after a restart its BYE still frees the relay and sipanchor can
//     still end it (media timeout, API) with well-formed BYEs;
//   - calls: one call record per ended dialog, with its media totals.

// record is a dialog as stored.
type record struct {
	CallID   string            `json:"call_id"`
	Caller   Party             `json:"caller"`
	Callee   Party             `json:"callee"`
	Branch   string            `json:"branch"`
	Engaged  bool              `json:"engaged"`
	Created  time.Time         `json:"created"`
	Answered time.Time         `json:"answered"`
	Flags    [2]relay.LegFlags `json:"flags"`
	Accepted [2][]byte         `json:"accepted"`
	Offset   [2]uint32         `json:"offset,omitempty"`
	Moves    int               `json:"moves,omitempty"`
	Media    json.RawMessage   `json:"media,omitempty"`
	// A dialog saved while early (its INVITE forwarded with our relay SDP,
	// no 2xx yet): each branch's relay session, and what the 2xx needs.
	Early     bool                       `json:"early,omitempty"`
	Branches  map[string]json.RawMessage `json:"branches,omitempty"`
	LateOffer bool                       `json:"late_offer,omitempty"`
	Offer     []byte                     `json:"offer,omitempty"`
	Set       string                     `json:"set,omitempty"`
	Src       [2]netip.AddrPort          `json:"src"`
	Pending   []savedExchange            `json:"pending,omitempty"`
	Sent2xx   *sent2xx                   `json:"sent_2xx,omitempty"`
	Peer      string                     `json:"peer,omitempty"`
	User      string                     `json:"user,omitempty"`
	// The caller's Via branch of the INVITE, and how each pending
	// branch's INVITE left (early dialogs): a CANCEL or a final response
	// after a restart is handled from these.
	Invite  string                  `json:"invite,omitempty"`
	Targets map[string]BranchTarget `json:"targets,omitempty"`
	// Acked: the 2xx's ACK came (a confirmed dialog restored without it
	// waits for it again, what is left of 64×T1).
	Acked bool `json:"acked,omitempty"`
}

// dbWrite is one queued change: a dialog row to save, or an ended dialog
// whose row goes and whose call record comes.
type dbWrite struct {
	callID, fromTag string
	data            string // dialog row (upsert), or "" with rec set
	rec             *callRecord
	done            chan error // if set: told when the write is committed
}

type callRecord struct {
	caller, callee string
	started, ended int64
	answered       any // int64 or nil
	reason         string
	engaged        bool
	media          any // string or nil
	invite         any // the INVITE's Via branch: string or nil
}

// writer applies queued writes in batches, one transaction each: SQLite
// commits are what costs, and the call path must not wait for them. A
// crash loses at most the last batch (flushEvery).
func (m *Manager) writer() {
	defer close(m.flushed)
	defer func() { m.stmts.close() }() // prepared on first use
	var batch []dbWrite
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		err := m.apply(batch)
		if err != nil {
			m.log.Error("dialog store write failed", "writes", len(batch), "err", err)
		}
		for _, w := range batch {
			if w.done != nil {
				w.done <- err
			}
		}
		batch = batch[:0]
	}
	for {
		select {
		case w, ok := <-m.writes:
			if !ok {
				flush()
				return
			}
			if len(batch) == 0 {
				timer.Reset(flushEvery)
			}
			batch = append(batch, w)
			if w.done != nil {
				// Someone waits: group commit what is queued now, at once.
				batch = m.drain(batch)
				flush()
				continue
			}
			if len(batch) >= 512 {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// drain adds what is already queued to batch, without waiting.
func (m *Manager) drain(batch []dbWrite) []dbWrite {
	for len(batch) < 512 {
		select {
		case w, ok := <-m.writes:
			if !ok {
				return batch
			}
			batch = append(batch, w)
		default:
			return batch
		}
	}
	return batch
}

// flushEvery bounds how long a change waits before it is on disk.
const flushEvery = 50 * time.Millisecond

func (m *Manager) apply(batch []dbWrite) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m.stmts == nil {
		st, err := prepareStmts(ctx, m.cfg.DB)
		if err != nil {
			return err
		}
		m.stmts = st
	}
	tx, err := m.cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	save, del, history := tx.StmtContext(ctx, m.stmts.save), tx.StmtContext(ctx, m.stmts.del), tx.StmtContext(ctx, m.stmts.history)
	for _, w := range batch {
		if w.rec == nil {
			_, err = save.ExecContext(ctx, w.callID, w.fromTag, w.data)
		} else {
			_, err = del.ExecContext(ctx, w.callID, w.fromTag)
			if err == nil {
				r := w.rec
				_, err = history.ExecContext(ctx, w.callID, w.fromTag, r.caller, r.callee, r.started, r.answered, r.ended, r.reason, r.engaged, r.media, r.invite)
			}
		}
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}

// dialogStmts are the writer's statements, prepared once: otherwise
// SQLite compiles the SQL again on every write, which measured about a
// third of the writer's CPU at a few hundred calls a second. Only the
// writer goroutine uses them.
type dialogStmts struct{ save, del, history *sql.Stmt }

func (s *dialogStmts) close() {
	if s == nil {
		return
	}
	for _, st := range []*sql.Stmt{s.save, s.del, s.history} {
		st.Close()
	}
}

func prepareStmts(ctx context.Context, db *sql.DB) (*dialogStmts, error) {
	var s dialogStmts
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		{&s.save, `INSERT OR REPLACE INTO dialogs (call_id, from_tag, data) VALUES (?, ?, ?)`},
		{&s.del, `DELETE FROM dialogs WHERE call_id = ? AND from_tag = ?`},
		{&s.history, `INSERT INTO calls (call_id, from_tag, caller, callee, started, answered, ended, reason, engaged, media, invite_branch)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
	} {
		st, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			return nil, err
		}
		*p.st = st
	}
	return &s, nil
}

// Close writes what is queued and stops the writer.
func (m *Manager) Close() {
	if m.writes == nil {
		return
	}
	m.closeOnce.Do(func() {
		m.closeMu.Lock()
		m.stopped = true
		close(m.writes)
		m.closeMu.Unlock()
	})
	<-m.flushed
}

// persist queues a confirmed dialog's row; it reaches the disk within
// flushEvery. Call with the dialog locked.
func (m *Manager) persist(d *Dialog) { m.save(d, false) }

// persistNow writes a confirmed dialog and returns once it is committed
// (durable before visible: the SIP layer then relays the message that
// exposes this state). Writes queued by other calls go in the same commit.
// Call with the dialog locked.
func (m *Manager) persistNow(d *Dialog) { m.save(d, true) }

func (m *Manager) save(d *Dialog, wait bool) {
	if m.cfg.DB == nil || d.ended || !d.worthSaving() {
		return
	}
	rec := record{CallID: d.callID, Caller: d.caller, Callee: d.callee, Branch: d.branch, Engaged: d.engaged,
		Created: d.created, Answered: d.answered, Flags: d.flags, Accepted: d.accepted, Offset: d.offset, Moves: d.moves,
		Early: d.state == StateEarly, LateOffer: d.lateOffer, Offer: d.offer, Set: d.set, Src: d.src,
		Peer: d.peer, User: d.user, Pending: d.savedPending(), Sent2xx: d.sent2xx, Invite: d.invite,
		Acked: d.ackedYet()}
	if rec.Early {
		rec.Targets = d.targets
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if p, ok := m.engine.(relay.Persister); ok && d.engaged {
		if rec.Early {
			rec.Branches = map[string]json.RawMessage{}
			for b := range d.branches {
				if st, err := p.Export(ctx, d.req(b, relay.Caller, nil).Key); err == nil {
					rec.Branches[b] = st
				}
			}
		} else if d.session != nil {
			if st, err := p.Export(ctx, d.req(d.branch, relay.Caller, nil).Key); err == nil {
				rec.Media = st
			}
		}
	}
	data, err := json.Marshal(rec)
	if err != nil {
		d.log.Error("dialog not saved", "err", err)
		return
	}
	w := dbWrite{callID: d.callID, fromTag: d.caller.Tag, data: string(data)}
	if !wait {
		m.queue(w)
		return
	}
	m.commit(d, w, "dialog")
}

// commit hands w to the writer and returns once it is committed (durable
// before visible: the SIP layer then relays what exposes it), or after
// 2 s. Writes queued by other calls go in the same commit.
func (m *Manager) commit(d *Dialog, w dbWrite, what string) {
	w.done = make(chan error, 1)
	if !m.queue(w) {
		return
	}
	select {
	case err := <-w.done:
		if err != nil {
			d.log.Error(what+" not saved before it was relayed", "err", err)
		}
	case <-time.After(2 * time.Second):
		d.log.Warn(what + " save slower than 2 s; relaying anyway")
	}
}

// queue hands w to the writer; false when the store is closed.
func (m *Manager) queue(w dbWrite) bool {
	m.closeMu.RLock()
	defer m.closeMu.RUnlock()
	if m.writes == nil || m.stopped {
		return false
	}
	m.writes <- w
	return true
}

// Load restores the dialogs saved before a restart, with their relay
// sessions where the engine can rebuild them. It returns how many. A row
// that cannot be restored whole is skipped, with a warning saying why.
func (m *Manager) Load(ctx context.Context) (int, error) {
	if m.cfg.DB == nil {
		return 0, nil
	}
	rows, err := m.cfg.DB.QueryContext(ctx, `SELECT call_id, from_tag, data FROM dialogs`)
	if err != nil {
		return 0, err
	}
	var saved [][3]string // call_id, from_tag, data
	for rows.Next() {
		var r [3]string
		if err := rows.Scan(&r[0], &r[1], &r[2]); err != nil {
			rows.Close()
			return 0, err
		}
		saved = append(saved, r)
	}
	rows.Close() // the store has one connection: free it before restoring
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range saved {
		if err := m.restoreRow(ctx, r[0], r[1], r[2]); err != nil {
			m.log.Warn("saved dialog skipped", "call_id", r[0], "from_tag", r[1], "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		m.log.Info("dialogs restored", "dialogs", n)
	}
	return n, nil
}

// recordCall queues the call record of an ended dialog and the removal of
// its saved state. stats may be nil (not engaged, or nothing to say). A
// call never answered is committed before this returns: the final
// response the SIP layer sends next is ACKed to whichever process runs
// then, which knows that ACK by the record (FinalACK).
func (m *Manager) recordCall(d *Dialog, reason string, stats *relay.Stats) {
	if m.cfg.DB == nil {
		return
	}
	r := &callRecord{caller: d.caller.URI, callee: d.callee.URI, started: d.created.UnixMilli(),
		ended: time.Now().UnixMilli(), reason: reason, engaged: d.engaged}
	if stats != nil {
		if b, err := json.Marshal(stats.Streams); err == nil {
			r.media = string(b)
		}
	}
	if d.invite != "" {
		r.invite = d.invite
	}
	w := dbWrite{callID: d.callID, fromTag: d.caller.Tag, rec: r}
	if !d.answered.IsZero() {
		r.answered = d.answered.UnixMilli()
		m.queue(w)
		return
	}
	m.commit(d, w, "call record")
}

// endedWithInvite reports whether the call (callID, fromTag) has a call
// record whose INVITE carried Via branch branch.
func (m *Manager) endedWithInvite(ctx context.Context, callID, fromTag, branch string) bool {
	if m.cfg.DB == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var one int
	err := m.cfg.DB.QueryRowContext(ctx, `SELECT 1 FROM calls WHERE call_id = ? AND from_tag = ? AND invite_branch = ? LIMIT 1`,
		callID, fromTag, branch).Scan(&one)
	return err == nil
}
