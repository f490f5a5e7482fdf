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

const transcriptionColumns = `id, recording_id, project_id, mode, status, language, provider, engine, diarization,
	text, segments, confidence, word_count, duration_ms, error_code, error_message, attempts,
	created_at, updated_at, started_at, completed_at`

func scanTranscription(sc interface{ Scan(...any) error }) (*model.Transcription, error) {
	var t model.Transcription
	var lang, provider, engine, text, segments, code, msg sql.NullString
	var conf sql.NullFloat64
	var words, duration, started, completed sql.NullInt64
	var diar int
	var created, updated int64
	err := sc.Scan(&t.ID, &t.RecordingID, &t.ProjectID, &t.Mode, &t.Status, &lang, &provider, &engine, &diar,
		&text, &segments, &conf, &words, &duration, &code, &msg, &t.Attempts, &created, &updated,
		&started, &completed)
	if err != nil {
		return nil, err
	}
	t.Language = fromNullString(lang)
	t.Provider = fromNullString(provider)
	t.Engine = fromNullString(engine)
	t.Diarization = diar == 1
	t.Text = fromNullString(text)
	t.Segments = fromNullString(segments)
	if conf.Valid {
		c := conf.Float64
		t.Confidence = &c
	}
	t.WordCount = fromNullInt(words)
	if duration.Valid {
		d := duration.Int64
		t.DurationMs = &d
	}
	t.ErrorCode = fromNullString(code)
	t.ErrorMessage = fromNullString(msg)
	t.CreatedAt = fromMs(created)
	t.UpdatedAt = fromMs(updated)
	t.StartedAt = fromNullMs(started)
	t.CompletedAt = fromNullMs(completed)
	return &t, nil
}

// ActiveTranscription returns the recording's pending or processing
// transcription, or ErrNotFound.
func (s *Store) ActiveTranscription(ctx context.Context, t model.Tenant, recordingID string) (*model.Transcription, error) {
	tr, err := scanTranscription(s.queryRow(ctx, `SELECT `+transcriptionColumns+` FROM transcriptions
		WHERE recording_id = ? AND project_id = ? AND mode = ? AND status IN (?, ?)
		ORDER BY created_at DESC, id DESC LIMIT 1`, recordingID, t.ProjectID, t.Mode,
		model.TranscriptionPending, model.TranscriptionProcessing))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return tr, err
}

// CreateTranscription stores a pending transcription and points the
// recording at it. Call it inside InTx after LockRecording.
func (s *Store) CreateTranscription(ctx context.Context, tr *model.Transcription) error {
	tr.ID = ids.New(ids.Transcription)
	now := s.nowMs()
	tr.Status = model.TranscriptionPending
	tr.CreatedAt, tr.UpdatedAt = fromMs(now), fromMs(now)
	_, err := s.exec(ctx, `INSERT INTO transcriptions (`+transcriptionColumns+`) VALUES
		(?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, ?, ?, NULL, NULL)`,
		tr.ID, tr.RecordingID, tr.ProjectID, tr.Mode, tr.Status, strPtr(tr.Language), strPtr(tr.Provider),
		boolInt(tr.Diarization), now, now)
	if err != nil {
		return fmt.Errorf("create transcription: %w", err)
	}
	_, err = s.exec(ctx, `UPDATE recordings SET transcription_id = ?, updated_at = ? WHERE id = ?`,
		tr.ID, now, tr.RecordingID)
	return err
}

// Transcription returns the tenant's transcription.
func (s *Store) Transcription(ctx context.Context, t model.Tenant, id string) (*model.Transcription, error) {
	tr, err := scanTranscription(s.queryRow(ctx, `SELECT `+transcriptionColumns+` FROM transcriptions
		WHERE id = ? AND project_id = ? AND mode = ?`, id, t.ProjectID, t.Mode))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return tr, err
}

// TranscriptionByID returns a transcription of any tenant, for workers.
func (s *Store) TranscriptionByID(ctx context.Context, id string) (*model.Transcription, error) {
	tr, err := scanTranscription(s.queryRow(ctx, `SELECT `+transcriptionColumns+` FROM transcriptions
		WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return tr, err
}

// Transcriptions returns one page of the tenant's transcriptions.
func (s *Store) Transcriptions(ctx context.Context, t model.Tenant, recordingID *string, p Page) ([]*model.Transcription, bool, error) {
	w := &where{}
	w.add("project_id = ? AND mode = ?", t.ProjectID, t.Mode)
	if recordingID != nil {
		w.add("recording_id = ?", *recordingID)
	}
	q, args := listQuery(`SELECT `+transcriptionColumns+` FROM transcriptions`, w, p)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list transcriptions: %w", err)
	}
	defer rows.Close()
	var out []*model.Transcription
	for rows.Next() {
		tr, err := scanTranscription(rows)
		if err != nil {
			return nil, false, err
		}
		out = append(out, tr)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	out, more := trim(out, p.Limit)
	return out, more, nil
}

// PendingTranscriptions returns ids of transcriptions that may have lost
// their job: pending ones created before pendingBefore, and processing ones
// not updated since staleBefore (their job was discarded after a crash).
func (s *Store) PendingTranscriptions(ctx context.Context, pendingBefore, staleBefore time.Time, limit int) ([]string, error) {
	rows, err := s.query(ctx, `SELECT id FROM transcriptions
		WHERE (status = ? AND created_at < ?) OR (status = ? AND updated_at < ?)
		ORDER BY created_at LIMIT ?`, model.TranscriptionPending, ms(pendingBefore),
		model.TranscriptionProcessing, ms(staleBefore), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// SaveTranscription writes a transcription's state and result.
func (s *Store) SaveTranscription(ctx context.Context, tr *model.Transcription) error {
	now := s.nowMs()
	tr.UpdatedAt = fromMs(now)
	return s.execOne(ctx, `UPDATE transcriptions SET status = ?, language = ?, engine = ?, text = ?, segments = ?,
		confidence = ?, word_count = ?, duration_ms = ?, error_code = ?, error_message = ?, attempts = ?,
		updated_at = ?, started_at = ?, completed_at = ? WHERE id = ?`,
		tr.Status, strPtr(tr.Language), strPtr(tr.Engine), strPtr(tr.Text), strPtr(tr.Segments),
		floatPtr(tr.Confidence), intPtr(tr.WordCount), int64Ptr(tr.DurationMs), strPtr(tr.ErrorCode),
		strPtr(tr.ErrorMessage), tr.Attempts, now, msPtr(tr.StartedAt), msPtr(tr.CompletedAt), tr.ID)
}

// SetRecordingStatus sets a recording's status when its current
// transcription is txnID, so a replaced transcription cannot move it.
func (s *Store) SetRecordingStatus(ctx context.Context, recordingID, txnID, status string) error {
	_, err := s.exec(ctx, `UPDATE recordings SET status = ?, updated_at = ? WHERE id = ? AND transcription_id = ?`,
		status, s.nowMs(), recordingID, txnID)
	return err
}

func floatPtr(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// ProjectConfig returns a project's stored section JSON, or ErrNotFound.
func (s *Store) ProjectConfig(ctx context.Context, t model.Tenant, section string) (string, time.Time, error) {
	var v string
	var updated int64
	err := s.queryRow(ctx, `SELECT value, updated_at FROM project_config WHERE project_id = ? AND mode = ? AND section = ?`,
		t.ProjectID, t.Mode, section).Scan(&v, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, ErrNotFound
	}
	return v, fromMs(updated), err
}

// SetProjectConfig stores a project's section JSON.
func (s *Store) SetProjectConfig(ctx context.Context, t model.Tenant, section, value string) error {
	_, err := s.exec(ctx, `INSERT INTO project_config (project_id, mode, section, value, updated_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (project_id, mode, section)
		DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		t.ProjectID, t.Mode, section, value, s.nowMs())
	return err
}
