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

const recordingColumns = `id, project_id, mode, device_id, end_user_id, name, status, source, upload_method,
	recorded_at, started_at, ended_at, duration_ms, content_sha256, content_sha256_verified_at,
	uploaded_at, transcription_id, streaming, stream_state, complete_response, metadata,
	created_at, updated_at`

func scanRecording(sc interface{ Scan(...any) error }) (*model.Recording, error) {
	var r model.Recording
	var device, endUser, name, method, sha, txn, stream, complete sql.NullString
	var recorded, started, ended, duration, verified, uploaded sql.NullInt64
	var streaming int
	var meta string
	var created, updated int64
	err := sc.Scan(&r.ID, &r.ProjectID, &r.Mode, &device, &endUser, &name, &r.Status, &r.Source, &method,
		&recorded, &started, &ended, &duration, &sha, &verified, &uploaded, &txn, &streaming, &stream,
		&complete, &meta, &created, &updated)
	if err != nil {
		return nil, err
	}
	r.DeviceID = fromNullString(device)
	r.EndUserID = fromNullString(endUser)
	r.Name = fromNullString(name)
	r.UploadMethod = fromNullString(method)
	r.RecordedAt = fromNullMs(recorded)
	r.StartedAt = fromNullMs(started)
	r.EndedAt = fromNullMs(ended)
	if duration.Valid {
		d := duration.Int64
		r.DurationMs = &d
	}
	r.ContentSHA256 = fromNullString(sha)
	r.ContentSHA256VerifiedAt = fromNullMs(verified)
	r.UploadedAt = fromNullMs(uploaded)
	r.TranscriptionID = fromNullString(txn)
	r.Streaming = streaming == 1
	r.StreamState = fromNullString(stream)
	r.CompleteResponse = fromNullString(complete)
	r.Metadata = decodeObject(meta)
	r.CreatedAt = fromMs(created)
	r.UpdatedAt = fromMs(updated)
	return &r, nil
}

func int64Ptr(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// CreateRecording stores a new recording.
func (s *Store) CreateRecording(ctx context.Context, r *model.Recording) error {
	r.ID = ids.New(ids.Recording)
	now := s.nowMs()
	r.CreatedAt, r.UpdatedAt = fromMs(now), fromMs(now)
	_, err := s.exec(ctx, `INSERT INTO recordings (`+recordingColumns+`) VALUES
		(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, ?, ?, NULL, ?, ?, ?)`,
		r.ID, r.ProjectID, r.Mode, strPtr(r.DeviceID), strPtr(r.EndUserID), strPtr(r.Name), r.Status,
		r.Source, strPtr(r.UploadMethod), msPtr(r.RecordedAt), msPtr(r.StartedAt), msPtr(r.EndedAt),
		boolInt(r.Streaming), strPtr(r.StreamState), encodeObject(r.Metadata), now, now)
	if err != nil {
		return fmt.Errorf("create recording: %w", err)
	}
	return nil
}

// Recording returns the tenant's recording with its media.
func (s *Store) Recording(ctx context.Context, t model.Tenant, id string) (*model.Recording, error) {
	r, err := scanRecording(s.queryRow(ctx, `SELECT `+recordingColumns+` FROM recordings
		WHERE id = ? AND project_id = ? AND mode = ?`, id, t.ProjectID, t.Mode))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read recording: %w", err)
	}
	r.Media, err = s.MediaOf(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// RecordingFilter narrows a list of recordings.
type RecordingFilter struct {
	DeviceID      *string
	EndUserID     *string
	Status        *string
	CreatedAfter  *time.Time
	CreatedBefore *time.Time
}

// Recordings returns one page of the tenant's recordings, newest first,
// each with its media.
func (s *Store) Recordings(ctx context.Context, t model.Tenant, f RecordingFilter, p Page) ([]*model.Recording, bool, error) {
	w := &where{}
	w.add("project_id = ? AND mode = ?", t.ProjectID, t.Mode)
	if f.DeviceID != nil {
		w.add("device_id = ?", *f.DeviceID)
	}
	if f.EndUserID != nil {
		w.add("end_user_id = ?", *f.EndUserID)
	}
	if f.Status != nil {
		w.add("status = ?", *f.Status)
	}
	if f.CreatedAfter != nil {
		w.add("created_at > ?", ms(*f.CreatedAfter))
	}
	if f.CreatedBefore != nil {
		w.add("created_at < ?", ms(*f.CreatedBefore))
	}
	q, args := listQuery(`SELECT `+recordingColumns+` FROM recordings`, w, p)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list recordings: %w", err)
	}
	var out []*model.Recording
	for rows.Next() {
		r, err := scanRecording(rows)
		if err != nil {
			rows.Close()
			return nil, false, err
		}
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	out, more := trim(out, p.Limit)
	if err := s.attachMedia(ctx, out); err != nil {
		return nil, false, err
	}
	return out, more, nil
}

// attachMedia loads the media of several recordings in one query.
func (s *Store) attachMedia(ctx context.Context, recs []*model.Recording) error {
	if len(recs) == 0 {
		return nil
	}
	byID := make(map[string]*model.Recording, len(recs))
	args := make([]any, 0, len(recs))
	for _, r := range recs {
		r.Media = []*model.Media{}
		byID[r.ID] = r
		args = append(args, r.ID)
	}
	rows, err := s.queryUncached(ctx, `SELECT `+mediaColumns+` FROM media WHERE recording_id IN (`+placeholders(len(recs))+`)
		ORDER BY created_at, id`, args...)
	if err != nil {
		return fmt.Errorf("list media: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return err
		}
		if r := byID[m.RecordingID]; r != nil {
			r.Media = append(r.Media, m)
		}
	}
	return rows.Err()
}

// UpdateRecordingDetails writes a recording's name and metadata.
func (s *Store) UpdateRecordingDetails(ctx context.Context, r *model.Recording) error {
	now := s.nowMs()
	err := s.execOne(ctx, `UPDATE recordings SET name = ?, metadata = ?, updated_at = ?
		WHERE id = ? AND project_id = ? AND mode = ?`, strPtr(r.Name), encodeObject(r.Metadata), now,
		r.ID, r.ProjectID, r.Mode)
	if err != nil {
		return err
	}
	r.UpdatedAt = fromMs(now)
	return nil
}

// SaveRecordingState writes the fields upload, streaming and processing
// change.
func (s *Store) SaveRecordingState(ctx context.Context, r *model.Recording) error {
	now := s.nowMs()
	err := s.execOne(ctx, `UPDATE recordings SET status = ?, duration_ms = ?, content_sha256 = ?,
		content_sha256_verified_at = ?, uploaded_at = ?, transcription_id = ?, stream_state = ?,
		complete_response = ?, updated_at = ? WHERE id = ? AND project_id = ? AND mode = ?`,
		r.Status, int64Ptr(r.DurationMs), strPtr(r.ContentSHA256), msPtr(r.ContentSHA256VerifiedAt),
		msPtr(r.UploadedAt), strPtr(r.TranscriptionID), strPtr(r.StreamState), strPtr(r.CompleteResponse),
		now, r.ID, r.ProjectID, r.Mode)
	if err != nil {
		return err
	}
	r.UpdatedAt = fromMs(now)
	return nil
}

// LockRecording re-reads a recording inside a transaction so that two
// completes of one recording run one after the other. On PostgreSQL it
// takes a row lock; SQLite transactions already hold the database's write
// lock from their start.
func (s *Store) LockRecording(ctx context.Context, t model.Tenant, id string) (*model.Recording, error) {
	if s.dialect.Name() == "postgres" {
		if _, err := s.exec(ctx, `SELECT id FROM recordings WHERE id = ? FOR UPDATE`, id); err != nil {
			return nil, fmt.Errorf("lock recording: %w", err)
		}
	}
	return s.Recording(ctx, t, id)
}

// DeleteRecording removes a recording with its media records, upload
// tokens and transcriptions, and returns the media keys to delete.
func (s *Store) DeleteRecording(ctx context.Context, t model.Tenant, id string) ([]string, error) {
	var n int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM recordings WHERE id = ? AND project_id = ? AND mode = ?`,
		id, t.ProjectID, t.Mode).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, ErrNotFound
	}
	return s.deleteRecordingsWhere(ctx, `id = ? AND project_id = ? AND mode = ?`, id, t.ProjectID, t.Mode)
}

const mediaColumns = `id, recording_id, project_id, mode, type, mime_type, file_size_bytes, status, storage_key,
	sha256, duration_ms, captured_at, url_expires_at, created_at, uploaded_at`

func scanMedia(sc interface{ Scan(...any) error }) (*model.Media, error) {
	var m model.Media
	var size, duration, captured, uploaded sql.NullInt64
	var sha sql.NullString
	var expires, created int64
	err := sc.Scan(&m.ID, &m.RecordingID, &m.ProjectID, &m.Mode, &m.Type, &m.MimeType, &size, &m.Status,
		&m.StorageKey, &sha, &duration, &captured, &expires, &created, &uploaded)
	if err != nil {
		return nil, err
	}
	if size.Valid {
		v := size.Int64
		m.FileSizeBytes = &v
	}
	if duration.Valid {
		v := duration.Int64
		m.DurationMs = &v
	}
	m.SHA256 = fromNullString(sha)
	m.CapturedAt = fromNullMs(captured)
	m.URLExpiresAt = fromMs(expires)
	m.CreatedAt = fromMs(created)
	m.UploadedAt = fromNullMs(uploaded)
	return &m, nil
}

// MediaOf returns a recording's media, oldest first.
func (s *Store) MediaOf(ctx context.Context, recordingID string) ([]*model.Media, error) {
	rows, err := s.query(ctx, `SELECT `+mediaColumns+` FROM media WHERE recording_id = ? ORDER BY created_at, id`,
		recordingID)
	if err != nil {
		return nil, fmt.Errorf("list media: %w", err)
	}
	defer rows.Close()
	out := []*model.Media{}
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// CreateMedia stores a pending media record.
func (s *Store) CreateMedia(ctx context.Context, m *model.Media) error {
	now := s.nowMs()
	m.CreatedAt = fromMs(now)
	_, err := s.exec(ctx, `INSERT INTO media (`+mediaColumns+`) VALUES
		(?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, NULL)`,
		m.ID, m.RecordingID, m.ProjectID, m.Mode, m.Type, m.MimeType, int64Ptr(m.FileSizeBytes), m.Status,
		m.StorageKey, msPtr(m.CapturedAt), ms(m.URLExpiresAt), now)
	if err != nil {
		return fmt.Errorf("create media: %w", err)
	}
	return nil
}

// SaveMedia writes a media record's upload fields.
func (s *Store) SaveMedia(ctx context.Context, m *model.Media) error {
	return s.execOne(ctx, `UPDATE media SET status = ?, file_size_bytes = ?, sha256 = ?, duration_ms = ?,
		uploaded_at = ?, url_expires_at = ? WHERE id = ?`, m.Status, int64Ptr(m.FileSizeBytes),
		strPtr(m.SHA256), int64Ptr(m.DurationMs), msPtr(m.UploadedAt), ms(m.URLExpiresAt), m.ID)
}

// StaleMedia returns pending media whose upload URL expired before cutoff.
func (s *Store) StaleMedia(ctx context.Context, cutoff time.Time, limit int) ([]*model.Media, error) {
	rows, err := s.query(ctx, `SELECT `+mediaColumns+` FROM media WHERE status IN (?, ?) AND url_expires_at < ?
		ORDER BY url_expires_at LIMIT ?`, model.MediaPending, model.MediaExpired, ms(cutoff), limit)
	if err != nil {
		return nil, fmt.Errorf("list stale media: %w", err)
	}
	defer rows.Close()
	var out []*model.Media
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeleteMedia removes one media record.
func (s *Store) DeleteMedia(ctx context.Context, id string) error {
	_, err := s.exec(ctx, `DELETE FROM media WHERE id = ?`, id)
	return err
}
