package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/botaserver/bota/internal/model"
)

// IdempotencyRecord is a stored request and, once it finished, its response.
type IdempotencyRecord struct {
	Endpoint string
	BodyHash string
	// Done is false while the first request still runs.
	Done     bool
	Status   int
	Response []byte
	// Reissue names the credential a replay must mint again, if any.
	Reissue string
	Created time.Time
}

// StaleRunningAfter is how long a request may hold its idempotency key
// while running. A key held longer was left by a node that stopped
// mid-request, and the next request with it runs again.
// NOTE: a request running longer than this (an upload-complete of a very
// large file on a slow disk) could then run twice at once. Storing the
// owning node with the key would tell a stopped node from a slow one.
const StaleRunningAfter = 2 * time.Minute

// BeginIdempotent claims key for a request. It returns nil when the caller
// owns the key and must run the request, or the existing record.
func (s *Store) BeginIdempotent(ctx context.Context, t model.Tenant, key, endpoint, bodyHash string, ttl time.Duration) (*IdempotencyRecord, error) {
	now := s.nowMs()
	// An expired record no longer holds the key, and neither does a
	// request marked running for longer than any request runs: its node
	// was killed before it could finish or release the key.
	if _, err := s.exec(ctx, `DELETE FROM idempotency_keys WHERE project_id = ? AND mode = ? AND key = ?
		AND (created_at < ? OR (state = 'running' AND created_at < ?))`, t.ProjectID, t.Mode, key,
		now-ttl.Milliseconds(), now-StaleRunningAfter.Milliseconds()); err != nil {
		return nil, fmt.Errorf("expire idempotency key: %w", err)
	}
	res, err := s.exec(ctx, `INSERT INTO idempotency_keys (project_id, mode, key, endpoint, body_hash,
		state, created_at) VALUES (?, ?, ?, ?, ?, 'running', ?) ON CONFLICT DO NOTHING`,
		t.ProjectID, t.Mode, key, endpoint, bodyHash, now)
	if err != nil {
		return nil, fmt.Errorf("claim idempotency key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n == 1 {
		return nil, nil
	}
	var rec IdempotencyRecord
	var state string
	var status sql.NullInt64
	var response, reissue sql.NullString
	var created int64
	err = s.queryRow(ctx, `SELECT endpoint, body_hash, state, status, response, reissue, created_at
		FROM idempotency_keys WHERE project_id = ? AND mode = ? AND key = ?`, t.ProjectID, t.Mode, key).
		Scan(&rec.Endpoint, &rec.BodyHash, &state, &status, &response, &reissue, &created)
	if errors.Is(err, sql.ErrNoRows) {
		// The owner gave the key up between our insert and read: retry.
		return s.BeginIdempotent(ctx, t, key, endpoint, bodyHash, ttl)
	}
	if err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	rec.Done = state == "done"
	rec.Status = int(status.Int64)
	rec.Response = []byte(response.String)
	rec.Reissue = reissue.String
	rec.Created = fromMs(created)
	return &rec, nil
}

// FinishIdempotent stores the response of the request that owns key.
func (s *Store) FinishIdempotent(ctx context.Context, t model.Tenant, key string, status int, response []byte, reissue string) error {
	_, err := s.exec(ctx, `UPDATE idempotency_keys SET state = 'done', status = ?, response = ?, reissue = ?
		WHERE project_id = ? AND mode = ? AND key = ?`, status, string(response), reissue,
		t.ProjectID, t.Mode, key)
	return err
}

// ReleaseIdempotent gives key up, so a retry runs the request again.
func (s *Store) ReleaseIdempotent(ctx context.Context, t model.Tenant, key string) error {
	_, err := s.exec(ctx, `DELETE FROM idempotency_keys WHERE project_id = ? AND mode = ? AND key = ?
		AND state = 'running'`, t.ProjectID, t.Mode, key)
	return err
}

// ReleaseRunningIdempotency gives up every key still marked running and
// returns how many there were. A server on SQLite calls it at start: one
// process owns the file, so a running key was left by a crash of that
// process, and every retry with it would fail with 409 until it expires.
func (s *Store) ReleaseRunningIdempotency(ctx context.Context) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM idempotency_keys WHERE state = 'running'`)
	if err != nil {
		return 0, fmt.Errorf("release running idempotency keys: %w", err)
	}
	return res.RowsAffected()
}

// PurgeIdempotency removes records older than ttl.
func (s *Store) PurgeIdempotency(ctx context.Context, ttl time.Duration) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < ?`, s.nowMs()-ttl.Milliseconds())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
