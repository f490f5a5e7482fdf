package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
)

// CreateUploadToken stores an upload token for a recording and revokes the
// recording's earlier tokens when revokeOthers is set.
func (s *Store) CreateUploadToken(ctx context.Context, t model.Tenant, recordingID, hash string, ttl time.Duration, revokeOthers bool) (string, time.Time, error) {
	now := s.nowMs()
	if revokeOthers {
		if _, err := s.exec(ctx, `UPDATE upload_tokens SET revoked_at = ? WHERE recording_id = ?
			AND revoked_at IS NULL`, now, recordingID); err != nil {
			return "", time.Time{}, fmt.Errorf("revoke upload tokens: %w", err)
		}
	}
	id := ids.New(ids.UploadToken)
	expires := now + ttl.Milliseconds()
	_, err := s.exec(ctx, `INSERT INTO upload_tokens (id, recording_id, project_id, mode, token_hash,
		created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`, id, recordingID, t.ProjectID, t.Mode,
		hash, now, expires)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("store upload token: %w", err)
	}
	return id, fromMs(expires), nil
}

// UploadTokenByHash returns a live upload token's id, tenant and recording.
func (s *Store) UploadTokenByHash(ctx context.Context, hash string) (string, model.Tenant, string, error) {
	var id, rec string
	var t model.Tenant
	var expires int64
	var revoked sql.NullInt64
	err := s.queryRow(ctx, `SELECT id, project_id, mode, recording_id, expires_at, revoked_at
		FROM upload_tokens WHERE token_hash = ?`, hash).Scan(&id, &t.ProjectID, &t.Mode, &rec, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return "", t, "", ErrNotFound
	}
	if err != nil {
		return "", t, "", fmt.Errorf("read upload token: %w", err)
	}
	if revoked.Valid || s.nowMs() >= expires {
		return "", t, "", ErrNotFound
	}
	return id, t, rec, nil
}
