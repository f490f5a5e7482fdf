package processing

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/store"
)

// Run executes one transcription job. It returns nil when the job is done
// (completed, failed for good, or no longer current) and an error when the
// queue should retry it. lastAttempt turns a retryable failure into a
// permanent one.
func (p *Pipeline) Run(ctx context.Context, transcriptionID string, lastAttempt bool) error {
	tr, err := p.Store.TranscriptionByID(ctx, transcriptionID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted with its recording
	}
	if err != nil {
		return err
	}
	if tr.Status == model.TranscriptionCompleted || tr.Status == model.TranscriptionFailed {
		return nil
	}
	rec, err := p.Store.Recording(ctx, tr.Tenant, tr.RecordingID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	log := p.Log.With("transcription_id", tr.ID, "recording_id", rec.ID, "project_id", tr.ProjectID)
	if err := p.start(ctx, tr); err != nil {
		return err
	}

	result, engineName, err := p.transcribe(ctx, tr, rec)
	if err != nil {
		se := speech.AsError(err)
		if se.Retryable && !lastAttempt && ctx.Err() == nil {
			log.Warn("TranscriptionRetrying", "attempt", tr.Attempts, "code", se.Code, "err", err)
			return err
		}
		if se.Retryable && ctx.Err() != nil && !lastAttempt {
			return err
		}
		log.Info("TranscriptionFailed", "code", se.Code, "message", se.Message)
		return p.finish(ctx, tr, nil, engineName, se)
	}
	log.Info("TranscriptionCompleted", "engine", engineName, "words", len(strings.Fields(result.Text)))
	return p.finish(ctx, tr, result, engineName, nil)
}

// start marks the transcription and its recording processing; the first
// attempt records the transcription.started event.
func (p *Pipeline) start(ctx context.Context, tr *model.Transcription) error {
	return p.Store.InTx(ctx, func(tx *store.Store) error {
		now := tx.Now()
		first := tr.StartedAt == nil
		tr.Status = model.TranscriptionProcessing
		tr.Attempts++
		if first {
			tr.StartedAt = &now
		}
		if err := tx.SaveTranscription(ctx, tr); err != nil {
			return err
		}
		if err := tx.SetRecordingStatus(ctx, tr.RecordingID, tr.ID, model.RecordingProcessing); err != nil {
			return err
		}
		if !first {
			return nil
		}
		_, err := tx.AddEvent(ctx, tr.Tenant, "transcription.started", p.eventData(tr))
		return err
	})
}

// transcribe copies the recording's audio to a temporary file and runs the
// chosen engine on it.
func (p *Pipeline) transcribe(ctx context.Context, tr *model.Transcription, rec *model.Recording) (*speech.Result, string, error) {
	provider := ""
	if tr.Provider != nil {
		provider = *tr.Provider
	}
	// engine stays null on failures before an engine runs, because engine
	// names what ran.
	engine, err := p.Engines.Lookup(provider)
	if err != nil {
		return nil, "", err
	}
	media := audioMedia(rec)
	if media == nil {
		return nil, "", fail(speech.CodeUnsupportedFormat, "recording %s has no uploaded audio", rec.ID)
	}
	path, err := p.download(ctx, media)
	if err != nil {
		return nil, "", &speech.Error{Code: speech.CodeProcessingError,
			Message: "could not read the audio from storage", Retryable: true, Err: err}
	}
	defer os.Remove(path)
	if err := checkAudio(ctx, path, media); err != nil {
		return nil, "", err
	}
	req := speech.Request{Path: path, ContentType: media.MimeType, Diarization: tr.Diarization}
	if tr.Language != nil {
		req.Language = *tr.Language
	}
	result, err := engine.Transcribe(ctx, req)
	return result, engine.Name(), err
}

func audioMedia(rec *model.Recording) *model.Media {
	for _, m := range rec.Media {
		if m.Type == "audio" && m.Status == model.MediaUploaded {
			return m
		}
	}
	return nil
}

func (p *Pipeline) download(ctx context.Context, m *model.Media) (string, error) {
	rc, err := p.Blob.Open(ctx, m.StorageKey)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	ext := m.StorageKey[strings.LastIndexByte(m.StorageKey, '.')+1:]
	f, err := os.CreateTemp("", "bota-audio-*."+ext)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// finish stores the result or the failure, moves the recording to
// completed or failed (when this is still its current transcription), and
// records the event, all in one transaction.
func (p *Pipeline) finish(ctx context.Context, tr *model.Transcription, result *speech.Result, engine string, failure *speech.Error) error {
	ctx = context.WithoutCancel(ctx)
	return p.Store.InTx(ctx, func(tx *store.Store) error {
		now := tx.Now()
		tr.CompletedAt = &now
		if engine != "" {
			tr.Engine = &engine
		}
		recStatus, event := model.RecordingCompleted, "transcription.completed"
		if failure != nil {
			tr.Status = model.TranscriptionFailed
			tr.ErrorCode, tr.ErrorMessage = &failure.Code, &failure.Message
			recStatus, event = model.RecordingFailed, "transcription.failed"
		} else if err := applyResult(tr, result); err != nil {
			return err
		}
		if err := tx.SaveTranscription(ctx, tr); err != nil {
			return err
		}
		if err := tx.SetRecordingStatus(ctx, tr.RecordingID, tr.ID, recStatus); err != nil {
			return err
		}
		_, err := tx.AddEvent(ctx, tr.Tenant, event, p.eventData(tr))
		return err
	})
}

// eventData is the transcription as the API shows it, without segments
// and words, so that event bodies stay small.
func (p *Pipeline) eventData(tr *model.Transcription) map[string]any {
	data := p.Render(tr)
	delete(data, "segments")
	delete(data, "words")
	return data
}

// segmentJSON is a stored segment. Speaker and words are omitted when the
// engine does not give them.
type segmentJSON struct {
	ID         int        `json:"id"`
	Start      float64    `json:"start"`
	End        float64    `json:"end"`
	Text       string     `json:"text"`
	Speaker    string     `json:"speaker,omitempty"`
	Confidence float64    `json:"confidence"`
	Words      []wordJSON `json:"words,omitempty"`
}

type wordJSON struct {
	Word       string  `json:"word"`
	Start      float64 `json:"start"`
	End        float64 `json:"end"`
	Confidence float64 `json:"confidence"`
}

// applyResult stores an engine's result on tr. Clients require segments
// sorted by start with end > start, so segments are sorted (engines and
// hosted services do not promise order), times are rounded to
// milliseconds first, and a segment that is empty or ends at or before its
// start after rounding is dropped.
func applyResult(tr *model.Transcription, r *speech.Result) error {
	tr.Status = model.TranscriptionCompleted
	segments := make([]segmentJSON, 0, len(r.Segments))
	for _, s := range r.Segments {
		seg := segmentJSON{Start: round3(s.Start), End: round3(s.End), Text: strings.TrimSpace(s.Text),
			Speaker: s.Speaker, Confidence: round3(s.Confidence)}
		if seg.Start < 0 || seg.End <= seg.Start || seg.Text == "" {
			continue
		}
		for _, w := range s.Words {
			seg.Words = append(seg.Words, wordJSON{Word: w.Word, Start: round3(w.Start), End: round3(w.End),
				Confidence: round3(w.Confidence)})
		}
		slices.SortStableFunc(seg.Words, func(a, b wordJSON) int { return cmp.Compare(a.Start, b.Start) })
		segments = append(segments, seg)
	}
	slices.SortStableFunc(segments, func(a, b segmentJSON) int { return cmp.Compare(a.Start, b.Start) })
	for i := range segments {
		segments[i].ID = i
	}
	raw, err := json.Marshal(segments)
	if err != nil {
		return fmt.Errorf("encode segments: %w", err)
	}
	text := strings.TrimSpace(r.Text)
	words := len(strings.Fields(text))
	conf := round3(r.Confidence)
	segs := string(raw)
	tr.Text, tr.Segments, tr.WordCount, tr.Confidence = &text, &segs, &words, &conf
	if r.DurationMs > 0 {
		d := r.DurationMs
		tr.DurationMs = &d
	}
	lang := r.Language
	if lang == "" && tr.Language != nil {
		lang = *tr.Language
	}
	if lang != "" {
		tr.Language = &lang
	}
	tr.ErrorCode, tr.ErrorMessage = nil, nil
	return nil
}

func round3(v float64) float64 {
	if v < 0 {
		return -round3(-v)
	}
	return float64(int64(v*1000+0.5)) / 1000
}
