package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/processing"
	"github.com/botaserver/bota/internal/store"
)

var languagePattern = regexp.MustCompile(`^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$`)

// TranscriptionJSON is the API object of a transcription. provider is null
// when the server's own engine ran; engine names what ran.
func TranscriptionJSON(tr *model.Transcription) map[string]any {
	segments, words := segmentsAndWords(tr.Segments)
	var errObj any
	if tr.ErrorCode != nil {
		errObj = map[string]any{"code": *tr.ErrorCode, "message": tr.ErrorMessage}
	}
	out := map[string]any{
		"id":           tr.ID,
		"object":       "transcription",
		"project_id":   tr.ProjectID,
		"recording_id": tr.RecordingID,
		"status":       tr.Status,
		"language":     tr.Language,
		"provider":     tr.Provider,
		"engine":       tr.Engine,
		"text":         tr.Text,
		"full_text":    tr.Text,
		"segments":     segments,
		"confidence":   tr.Confidence,
		"word_count":   tr.WordCount,
		"duration_ms":  tr.DurationMs,
		"error":        errObj,
		"created_at":   formatTime(tr.CreatedAt),
		"updated_at":   formatTime(tr.UpdatedAt),
		"started_at":   formatTimePtr(tr.StartedAt),
		"completed_at": formatTimePtr(tr.CompletedAt),
		"deleted_at":   nil,
	}
	if words != nil {
		out["words"] = words
	}
	return out
}

// segmentsAndWords returns the stored segments as they are and the words
// of all segments as one array, both raw JSON, so that a long transcript
// is not rebuilt as a map per word. Both are nil when segments is nil or
// not an array of segments.
func segmentsAndWords(segments *string) (any, any) {
	if segments == nil {
		return nil, nil
	}
	var segs []struct {
		Words []json.RawMessage `json:"words"`
	}
	if err := json.Unmarshal([]byte(*segments), &segs); err != nil {
		return nil, nil
	}
	n := 0
	for _, s := range segs {
		n += len(s.Words)
	}
	if n == 0 {
		return json.RawMessage(*segments), nil
	}
	var words bytes.Buffer
	words.Grow(len(*segments))
	words.WriteByte('[')
	for _, s := range segs {
		for _, w := range s.Words {
			if words.Len() > 1 {
				words.WriteByte(',')
			}
			words.Write(w)
		}
	}
	words.WriteByte(']')
	return json.RawMessage(*segments), json.RawMessage(words.Bytes())
}

type transcribeBody struct {
	RecordingID optional[string] `json:"recording_id"`
	Language    optional[string] `json:"language"`
	Provider    optional[string] `json:"provider"`
	Diarization optional[bool]   `json:"diarization"`
}

func (b *transcribeBody) options() (processing.Options, error) {
	opts := processing.Options{Language: b.Language.ptr(), Provider: b.Provider.ptr(), Diarization: true}
	if v := b.Diarization.ptr(); v != nil {
		opts.Diarization = *v
	}
	if opts.Language != nil && !languagePattern.MatchString(*opts.Language) {
		return opts, errInvalid("language", "language must be a code such as en or en-US.")
	}
	if opts.Provider != nil && !slices.Contains(transcriptionProviders, *opts.Provider) {
		return opts, errInvalid("provider", "provider must be one of local, whisper, deepgram, assemblyai, elevenlabs.")
	}
	return opts, nil
}

// transcribeRecording serves both POST /v1/recordings/{id}/transcribe and
// POST /v1/transcriptions: 201 with a new transcription, or 200 with the
// one already queued or running.
func (s *Server) transcribeRecording(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body transcribeBody
	if err := decode(r, &body); err != nil {
		return err
	}
	opts, err := body.options()
	if err != nil {
		return err
	}
	recID := r.PathValue("id")
	if recID == "" {
		v := body.RecordingID.ptr()
		if v == nil || *v == "" {
			return errInvalid("recording_id", "recording_id is required.")
		}
		recID = *v
	}
	if !ids.Valid(ids.Recording, recID) {
		return errNotFound("Recording "+truncate(recID, 80), paramFor(r, "recording_id"))
	}

	tr, created, err := s.cfg.Pipeline.Request(r.Context(), p.Tenant, recID, opts)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNotFound("Recording "+recID, paramFor(r, "recording_id"))
	case errors.Is(err, processing.ErrNotUploaded):
		return errConflict("conflict", paramFor(r, "recording_id"),
			"Recording %s has no uploaded audio yet; complete the upload first.", recID)
	case err != nil:
		return errInternal(err)
	}

	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, TranscriptionJSON(tr))
	return nil
}

// paramFor names the recording id parameter: the path's id or the body's
// field.
func paramFor(r *http.Request, field string) string {
	if r.PathValue("id") != "" {
		return "id"
	}
	return field
}

func (s *Server) getTranscription(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := r.PathValue("id")
	if !ids.Valid(ids.Transcription, id) {
		return errNotFound("Transcription "+truncate(id, 80), "id")
	}
	tr, err := s.store.Transcription(r.Context(), p.Tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Transcription "+id, "id")
	}
	if err != nil {
		return errInternal(err)
	}
	writeJSON(w, http.StatusOK, TranscriptionJSON(tr))
	return nil
}

func (s *Server) listTranscriptions(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	page, err := s.pageParams(r)
	if err != nil {
		return err
	}
	items, more, err := s.store.Transcriptions(r.Context(), p.Tenant, queryFilter(r, "recording_id"), page)
	if err != nil {
		return errInternal(err)
	}
	writePage(s, w, r, items, more, TranscriptionJSON)
	return nil
}
