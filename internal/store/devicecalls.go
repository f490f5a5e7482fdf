package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/botaserver/bota/internal/model"
)

// Every device request reads its token, and every device of a fleet sends
// heartbeats. Both are therefore combined across concurrent requests: one
// statement reads the tokens of a group, and one writes its heartbeats.
// Each request still gets its own result, and a heartbeat's response
// follows the commit of its write.

// maxCombined is the largest group. On an engine without array
// parameters, its statement has a row or a placeholder per call, padded
// to 1, 2, 4 ... 64.
const maxCombined = 64

// startCombiners sets up the combined token reads and heartbeat writes.
// One group of each kind runs at a time. While it runs, the next group
// gathers every request that arrives, so under load the groups are large.
// On two cores, a second concurrent group made the groups smaller and
// halved the heartbeat throughput on PostgreSQL.
func (s *Store) startCombiners() {
	s.tokenReads = &combiner[tokenRead]{
		slot: make(chan struct{}, 1),
		max:  maxCombined,
		run:  s.readTokens,
		fail: func(r *tokenRead, err error) { r.err = err },
	}
	s.heartbeats = &combiner[heartbeatCall]{
		slot: make(chan struct{}, 1),
		max:  maxCombined,
		run: func(ctx context.Context, calls []*heartbeatCall) {
			if err := s.updateHeartbeats(ctx, calls); err != nil {
				// The group may have failed for a reason of its own, such
				// as a deadlock with a transaction that locks several of
				// its devices, so each call runs again on its own.
				for _, c := range calls {
					c.found = false
					c.err = s.updateHeartbeats(ctx, []*heartbeatCall{c})
				}
			}
		},
		fail: func(c *heartbeatCall, err error) { c.err = err },
	}
}

// tokenRead is one device token lookup and, once run, the stored row.
type tokenRead struct {
	hash string

	found                              bool
	tok                                model.DeviceToken
	created                            int64
	expires, revoked, grace, firstUsed sql.NullInt64
	replaced                           sql.NullString
	err                                error
}

// readTokens reads the tokens of reads with one query.
func (s *Store) readTokens(ctx context.Context, reads []*tokenRead) {
	byHash := make(map[string][]*tokenRead, len(reads))
	hashes := make([]string, 0, len(reads))
	for _, r := range reads {
		if byHash[r.hash] == nil {
			hashes = append(hashes, r.hash)
		}
		byHash[r.hash] = append(byHash[r.hash], r)
	}
	match := `token_hash = ANY(CAST(? AS TEXT[]))`
	args := []any{hashes}
	if !s.takesArrays() {
		// The padding repeats the last hash, which matches nothing new.
		size := paddedSize(len(hashes))
		match = `token_hash IN (` + placeholders(size) + `)`
		args = make([]any, size)
		for i := range args {
			args[i] = hashes[min(i, len(hashes)-1)]
		}
	}

	err := func() error {
		rows, err := s.query(ctx, `SELECT token_hash, id, device_id, project_id, mode, created_at, expires_at,
			revoked_at, grace_until, replaced_by, first_used_at FROM device_tokens WHERE `+match, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var hash string
			var row tokenRead
			if err := rows.Scan(&hash, &row.tok.ID, &row.tok.DeviceID, &row.tok.ProjectID, &row.tok.Mode,
				&row.created, &row.expires, &row.revoked, &row.grace, &row.replaced, &row.firstUsed); err != nil {
				return err
			}
			row.found = true
			for _, r := range byHash[hash] {
				row.hash = r.hash
				*r = row
			}
		}
		return rows.Err()
	}()
	if err != nil {
		for _, r := range reads {
			r.err = err
		}
	}
}

// heartbeatCall is one heartbeat to store and, once run, whether its
// device was found.
type heartbeatCall struct {
	tenant model.Tenant
	id     string
	h      Heartbeat
	now    int64
	// token, when set, is the hash of a device token that must be usable
	// and belong to the device, checked in the same statement.
	token string

	found bool
	err   error
}

// updateHeartbeats writes calls with one UPDATE per round. A device
// appears once per round, so two heartbeats of one device in a group
// apply in the order they came and neither overwrites the other's fields.
func (s *Store) updateHeartbeats(ctx context.Context, calls []*heartbeatCall) error {
	var rounds [][]*heartbeatCall
	for len(calls) > 0 {
		var round []*heartbeatCall
		round, calls = distinctDevices(calls)
		rounds = append(rounds, round)
	}
	write := func(st *Store) error {
		for _, round := range rounds {
			if err := s.updateHeartbeatRound(ctx, st, round); err != nil {
				return err
			}
		}
		return nil
	}
	if s.writeSlot != nil || len(rounds) > 1 {
		// One transaction holds the single writer's slot, and it keeps
		// the rounds all or nothing, so that a failed group can run its
		// calls again without applying a device's older report last.
		return s.InTx(ctx, write)
	}
	return write(s)
}

// distinctDevices splits calls into the first call of each device, sorted
// by device id, and the rest. With the rows in id order, the UPDATEs of two
// nodes usually lock them in the same order. PostgreSQL detects a deadlock
// this does not prevent, and the group then runs its calls one by one.
func distinctDevices(calls []*heartbeatCall) (round, rest []*heartbeatCall) {
	seen := make(map[string]bool, len(calls))
	for _, c := range calls {
		if seen[c.id] {
			rest = append(rest, c)
			continue
		}
		seen[c.id] = true
		round = append(round, c)
	}
	slices.SortFunc(round, func(a, b *heartbeatCall) int { return strings.Compare(a.id, b.id) })
	return round, rest
}

// heartbeatTypes are the SQL types of the values in each heartbeat row:
// device id, project, mode, the four numbers, firmware, name, state patch,
// time and token hash.
var heartbeatTypes = []string{"TEXT", "TEXT", "TEXT", "INTEGER", "INTEGER", "INTEGER", "INTEGER",
	"TEXT", "TEXT", "TEXT", "BIGINT", "TEXT"}

// updateHeartbeatRound runs one UPDATE for round, whose devices are
// distinct, through st, and marks the calls whose device it found.
func (s *Store) updateHeartbeatRound(ctx context.Context, st *Store, round []*heartbeatCall) error {
	byID := make(map[string]*heartbeatCall, len(round))
	for _, c := range round {
		byID[c.id] = c
	}
	var query string
	var args []any
	if s.takesArrays() {
		query, args = heartbeatUpdate(s.dialect, 0), heartbeatArrays(round)
	} else {
		size := paddedSize(len(round))
		query, args = heartbeatUpdate(s.dialect, size), heartbeatValues(round, size)
	}

	var rows *sql.Rows
	var err error
	if st.tx != nil && s.stmts != nil {
		stmt, perr := s.stmts.inTx(ctx, st.tx, query)
		if perr != nil {
			return perr
		}
		defer stmt.Close()
		rows, err = stmt.QueryContext(ctx, args...)
	} else {
		rows, err = st.q.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		if c := byID[id]; c != nil {
			c.found = true
		}
	}
	return rows.Err()
}

// heartbeatValues returns the values of round, a row after another, then
// size-len(round) rows of NULLs, which match no device.
func heartbeatValues(round []*heartbeatCall, size int) []any {
	args := make([]any, 0, size*len(heartbeatTypes))
	for _, c := range round {
		var patch any
		if c.h.StatePatch != nil {
			patch = string(c.h.StatePatch)
		}
		var token any
		if c.token != "" {
			token = c.token
		}
		args = append(args, c.id, c.tenant.ProjectID, c.tenant.Mode,
			intPtr(c.h.BatteryPercent), intPtr(c.h.StorageUsedMB), intPtr(c.h.StorageTotalMB),
			intPtr(c.h.SignalStrengthDBM), strPtr(c.h.FirmwareVersion), strPtr(c.h.Name), patch, c.now, token)
	}
	return append(args, make([]any, (size-len(round))*len(heartbeatTypes))...)
}

// heartbeatArrays returns the values of round as one array per column.
func heartbeatArrays(round []*heartbeatCall) []any {
	n := len(round)
	ids, projects, modes := make([]string, n), make([]string, n), make([]string, n)
	battery, used, total, signal := make([]*int, n), make([]*int, n), make([]*int, n), make([]*int, n)
	firmware, names, patches := make([]*string, n), make([]*string, n), make([]*string, n)
	times, tokens := make([]int64, n), make([]*string, n)
	for i, c := range round {
		ids[i], projects[i], modes[i] = c.id, c.tenant.ProjectID, c.tenant.Mode
		battery[i], used[i], total[i] = c.h.BatteryPercent, c.h.StorageUsedMB, c.h.StorageTotalMB
		signal[i], firmware[i], names[i] = c.h.SignalStrengthDBM, c.h.FirmwareVersion, c.h.Name
		if c.h.StatePatch != nil {
			patch := string(c.h.StatePatch)
			patches[i] = &patch
		}
		times[i] = c.now
		if c.token != "" {
			tokens[i] = &c.token
		}
	}
	return []any{ids, projects, modes, battery, used, total, signal, firmware, names, patches, times, tokens}
}

// heartbeatSQL holds the rebound UPDATE of each dialect and row count.
var heartbeatSQL sync.Map

// heartbeatUpdate returns the UPDATE that writes rows heartbeats, or any
// number of them as arrays when rows is 0. Every parameter is cast,
// because PostgreSQL cannot infer the type of a placeholder inside VALUES
// or unnest. The merge of recording_state runs in the UPDATE, so a
// heartbeat does not read the device first.
func heartbeatUpdate(d Dialect, rows int) string {
	key := fmt.Sprintf("%s/%d", d.Name(), rows)
	if q, ok := heartbeatSQL.Load(key); ok {
		return q.(string)
	}

	var b strings.Builder
	b.WriteString(`UPDATE devices SET
		battery_percent = COALESCE(v.column4, devices.battery_percent),
		storage_used_mb = COALESCE(v.column5, devices.storage_used_mb),
		storage_total_mb = COALESCE(v.column6, devices.storage_total_mb),
		signal_strength_dbm = COALESCE(v.column7, devices.signal_strength_dbm),
		firmware_version = COALESCE(v.column8, devices.firmware_version),
		name = COALESCE(v.column9, devices.name),
		recording_state = CASE WHEN v.column10 IS NULL THEN devices.recording_state ELSE `)

	b.WriteString(d.MergeJSON("COALESCE(devices.recording_state, "+emptyRecordingState+")", "v.column10"))
	b.WriteString(` END,
		last_heartbeat_at = v.column11, updated_at = v.column11
		FROM `)

	if rows == 0 {
		// The column names are those a VALUES list gets.
		b.WriteString("unnest(")
		for i, t := range heartbeatTypes {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("CAST(? AS " + t + "[])")
		}
		b.WriteString(") AS v(column1, column2, column3, column4, column5, column6, column7, column8, " +
			"column9, column10, column11, column12)")
	} else {
		b.WriteString("(VALUES ")
		for i := range rows {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(")
			for j, t := range heartbeatTypes {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString("CAST(? AS " + t + ")")
			}
			b.WriteString(")")
		}
		b.WriteString(") AS v")
	}

	b.WriteString(`
		WHERE devices.id = v.column1 AND devices.project_id = v.column2 AND devices.mode = v.column3
		AND (v.column12 IS NULL OR EXISTS (SELECT 1 FROM device_tokens t
			WHERE t.token_hash = v.column12 AND t.device_id = devices.id AND ` + usableToken("t", "v.column11") + `))
		RETURNING devices.id`)

	q := d.Rebind(b.String())
	heartbeatSQL.Store(key, q)
	return q
}

// placeholders returns n comma-separated placeholders.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
