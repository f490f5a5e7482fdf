package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
)

const endUserColumns = `id, project_id, mode, external_id, email, name, metadata, created_at, updated_at`

func scanEndUser(sc interface{ Scan(...any) error }) (*model.EndUser, error) {
	var u model.EndUser
	var ext, email, name sql.NullString
	var meta string
	var created, updated int64
	err := sc.Scan(&u.ID, &u.ProjectID, &u.Mode, &ext, &email, &name, &meta, &created, &updated)
	if err != nil {
		return nil, err
	}
	u.ExternalID = fromNullString(ext)
	u.Email = fromNullString(email)
	u.Name = fromNullString(name)
	u.Metadata = decodeObject(meta)
	u.CreatedAt = fromMs(created)
	u.UpdatedAt = fromMs(updated)
	return &u, nil
}

// CreateEndUser stores a new end user. A taken external_id is ErrConflict.
func (s *Store) CreateEndUser(ctx context.Context, u *model.EndUser) error {
	u.ID = ids.New(ids.EndUser)
	now := s.nowMs()
	u.CreatedAt, u.UpdatedAt = fromMs(now), fromMs(now)
	_, err := s.exec(ctx, `INSERT INTO end_users (`+endUserColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.ProjectID, u.Mode, strPtr(u.ExternalID), strPtr(u.Email), strPtr(u.Name),
		encodeObject(u.Metadata), now, now)
	if err != nil {
		return fmt.Errorf("create end user: %w", err)
	}
	return nil
}

// EndUser returns the end user with id in the tenant.
func (s *Store) EndUser(ctx context.Context, t model.Tenant, id string) (*model.EndUser, error) {
	u, err := scanEndUser(s.queryRow(ctx, `SELECT `+endUserColumns+` FROM end_users
		WHERE id = ? AND project_id = ? AND mode = ?`, id, t.ProjectID, t.Mode))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return u, err
}

// EndUserFilter narrows a list of end users.
type EndUserFilter struct {
	ExternalID *string
	Email      *string
}

// EndUsers returns one page of the tenant's end users, newest first.
func (s *Store) EndUsers(ctx context.Context, t model.Tenant, f EndUserFilter, p Page) ([]*model.EndUser, bool, error) {
	w := &where{}
	w.add("project_id = ? AND mode = ?", t.ProjectID, t.Mode)
	if f.ExternalID != nil {
		w.add("external_id = ?", *f.ExternalID)
	}
	if f.Email != nil {
		w.add("email = ?", *f.Email)
	}
	q, args := listQuery(`SELECT `+endUserColumns+` FROM end_users`, w, p)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list end users: %w", err)
	}
	defer rows.Close()
	var out []*model.EndUser
	for rows.Next() {
		u, err := scanEndUser(rows)
		if err != nil {
			return nil, false, err
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	out, more := trim(out, p.Limit)
	return out, more, nil
}

// UpdateEndUser writes the end user's editable fields.
func (s *Store) UpdateEndUser(ctx context.Context, u *model.EndUser) error {
	now := s.nowMs()
	err := s.execOne(ctx, `UPDATE end_users SET external_id = ?, email = ?, name = ?, metadata = ?,
		updated_at = ? WHERE id = ? AND project_id = ? AND mode = ?`,
		strPtr(u.ExternalID), strPtr(u.Email), strPtr(u.Name), encodeObject(u.Metadata), now,
		u.ID, u.ProjectID, u.Mode)
	if err != nil {
		return fmt.Errorf("update end user: %w", err)
	}
	u.UpdatedAt = fromMs(now)
	return nil
}

// DeleteEndUser removes the end user, unbinds its devices and revokes their
// tokens, and removes its recordings, media records and transcriptions. It
// returns the storage keys of the removed media, for the caller to delete
// from blob storage. Call it inside InTx together with the event it causes.
func (s *Store) DeleteEndUser(ctx context.Context, t model.Tenant, id string) ([]string, error) {
	if err := s.execOne(ctx, `DELETE FROM end_users WHERE id = ? AND project_id = ? AND mode = ?`,
		id, t.ProjectID, t.Mode); err != nil {
		return nil, err
	}
	now := s.nowMs()
	if _, err := s.exec(ctx, `UPDATE device_tokens SET revoked_at = ? WHERE revoked_at IS NULL
		AND device_id IN (SELECT id FROM devices WHERE end_user_id = ? AND project_id = ? AND mode = ?)`,
		now, id, t.ProjectID, t.Mode); err != nil {
		return nil, fmt.Errorf("revoke device tokens: %w", err)
	}
	if _, err := s.exec(ctx, `UPDATE devices SET status = ?, end_user_id = NULL, bound_at = NULL,
		updated_at = ? WHERE end_user_id = ? AND project_id = ? AND mode = ?`,
		model.DeviceUnbound, now, id, t.ProjectID, t.Mode); err != nil {
		return nil, fmt.Errorf("unbind devices: %w", err)
	}
	keys, err := s.deleteRecordingsWhere(ctx, `end_user_id = ? AND project_id = ? AND mode = ?`,
		id, t.ProjectID, t.Mode)
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// deleteRecordingsWhere removes the recordings matching cond with their
// media, upload tokens and transcriptions, and returns the media keys.
func (s *Store) deleteRecordingsWhere(ctx context.Context, cond string, args ...any) ([]string, error) {
	sub := `SELECT id FROM recordings WHERE ` + cond
	rows, err := s.query(ctx, `SELECT storage_key FROM media WHERE recording_id IN (`+sub+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("list media keys: %w", err)
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return nil, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, table := range []string{"media", "upload_tokens", "transcriptions"} {
		if _, err := s.exec(ctx, `DELETE FROM `+table+` WHERE recording_id IN (`+sub+`)`, args...); err != nil {
			return nil, fmt.Errorf("delete %s: %w", table, err)
		}
	}
	if _, err := s.exec(ctx, `DELETE FROM recordings WHERE `+cond, args...); err != nil {
		return nil, fmt.Errorf("delete recordings: %w", err)
	}
	return keys, nil
}
