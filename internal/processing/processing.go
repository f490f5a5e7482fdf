// Package processing turns uploaded recordings into transcripts: it reads
// the events outbox, creates transcriptions, and runs them on a speech
// engine as durable jobs.
package processing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/store"
)

// ErrNotUploaded is returned when a transcription is asked for a recording
// whose audio is not uploaded yet.
var ErrNotUploaded = errors.New("recording audio is not uploaded")

// Enqueuer puts a transcription job on the durable queue. Inserting the
// same transcription twice must not run it twice.
// tx, when not nil, is the transaction that creates the transcription.
type Enqueuer interface {
	EnqueueTranscription(ctx context.Context, tx *sql.Tx, transcriptionID, recordingID string) error
}

// Pipeline creates and runs transcriptions.
type Pipeline struct {
	Store   *store.Store
	Blob    blob.Store
	Engines *speech.Registry
	Queue   Enqueuer
	Log     *slog.Logger
	// AutoTranscription reports whether a tenant transcribes uploads
	// automatically and with which provider (nil: the default engine).
	AutoTranscription func(ctx context.Context, t model.Tenant) (bool, *string, error)
	// Render turns a transcription into its API object, for events.
	Render func(*model.Transcription) map[string]any
}

// Options are the choices of a transcription request.
type Options struct {
	Language    *string
	Provider    *string
	Diarization bool
}

// transcribable lists the recording statuses a transcription may start
// from; processing returns the running one instead.
var transcribable = []string{model.RecordingUploaded, model.RecordingProcessing, model.RecordingCompleted,
	model.RecordingFailed}

// Request returns the recording's queued or running transcription, or
// creates a new one that replaces the current one. created reports which.
func (p *Pipeline) Request(ctx context.Context, t model.Tenant, recordingID string, opts Options) (*model.Transcription, bool, error) {
	var tr *model.Transcription
	created := false
	err := p.Store.InTx(ctx, func(tx *store.Store) error {
		rec, err := tx.LockRecording(ctx, t, recordingID)
		if err != nil {
			return err
		}
		if !slices.Contains(transcribable, rec.Status) {
			return ErrNotUploaded
		}
		active, err := tx.ActiveTranscription(ctx, t, recordingID)
		if err == nil {
			tr = active
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		provider := opts.Provider
		if provider != nil && *provider == speech.LocalName {
			provider = nil
		}
		tr = &model.Transcription{RecordingID: recordingID, Tenant: t, Language: opts.Language,
			Provider: provider, Diarization: opts.Diarization}
		if err := tx.CreateTranscription(ctx, tr); err != nil {
			return err
		}
		created = true
		return p.Queue.EnqueueTranscription(ctx, tx.Tx(), tr.ID, tr.RecordingID)
	})
	if err != nil {
		return nil, false, err
	}
	return tr, created, nil
}

// fail is a permanent failure with one of the documented codes.
func fail(code, format string, args ...any) *speech.Error {
	return &speech.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
