package processing

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/botaserver/bota/internal/store"
)

// EventHandler reacts to one stored event. It must be safe to run twice for
// the same event, because a crash between the handler and the mark that
// follows it makes the dispatcher hand the event out again.
type EventHandler func(ctx context.Context, e *store.Event) error

// Dispatcher hands stored events to their handlers, then marks them
// dispatched; it also re-queues transcriptions whose job insert was lost.
type Dispatcher struct {
	Store    *store.Store
	Handlers []EventHandler
	Pipeline *Pipeline
	Log      *slog.Logger
	// Interval is the poll period; Wake shortens the wait.
	Interval time.Duration
	wake     chan struct{}
}

// NewDispatcher returns a dispatcher polling every interval.
func NewDispatcher(st *store.Store, p *Pipeline, log *slog.Logger, interval time.Duration, handlers ...EventHandler) *Dispatcher {
	return &Dispatcher{Store: st, Pipeline: p, Log: log, Interval: interval, Handlers: handlers,
		wake: make(chan struct{}, 1)}
}

// Wake makes the dispatcher poll now.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run polls until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	lastRequeue := time.Time{}
	for {
		if _, err := d.DispatchOnce(ctx); err != nil && ctx.Err() == nil {
			d.Log.Warn("DispatchFailed", "err", err)
		}
		if time.Since(lastRequeue) > 30*time.Second {
			lastRequeue = time.Now()
			if err := d.requeue(ctx); err != nil && ctx.Err() == nil {
				d.Log.Warn("RequeueFailed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-time.After(d.Interval):
		}
	}
}

// DispatchOnce hands out every undispatched event and returns how many were
// marked dispatched.
func (d *Dispatcher) DispatchOnce(ctx context.Context) (int, error) {
	done := 0
	for {
		events, err := d.Store.UndispatchedEvents(ctx, 100)
		if err != nil {
			return done, err
		}
		if len(events) == 0 {
			return done, nil
		}
		progress := false
		for _, e := range events {
			if err := d.handle(ctx, e); err != nil {
				d.Log.Warn("EventHandlerFailed", "event_id", e.ID, "type", e.Type, "err", err)
				continue
			}
			if err := d.Store.MarkEventDispatched(ctx, e.ID); err != nil {
				return done, err
			}
			done++
			progress = true
		}
		if !progress {
			return done, nil
		}
	}
}

func (d *Dispatcher) handle(ctx context.Context, e *store.Event) error {
	for _, h := range d.Handlers {
		if err := h(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// staleProcessing is how long a transcription may stay processing without
// an update before its job is assumed lost. It exceeds the base job
// timeout and the rescue delay of a stopped node. An attempt on a long
// recording may run longer, but then its job is still running and the
// queue drops the new insert.
const staleProcessing = 2 * time.Hour

// requeue inserts jobs again for transcriptions that stayed pending or
// processing too long, so a job lost in a crash or discarded by the queue
// does not leave its transcription behind. The queue drops inserts of a
// transcription that already has an active job.
func (d *Dispatcher) requeue(ctx context.Context) error {
	now := d.Store.Now()
	ids, err := d.Store.PendingTranscriptions(ctx, now.Add(-30*time.Second), now.Add(-staleProcessing), 500)
	if err != nil {
		return err
	}
	for _, id := range ids {
		tr, err := d.Store.TranscriptionByID(ctx, id)
		if err != nil {
			continue
		}
		if err := d.Pipeline.Queue.EnqueueTranscription(ctx, nil, tr.ID, tr.RecordingID); err != nil {
			return err
		}
	}
	return nil
}

// UploadWork is the work of a recording.uploaded event, decided in the
// transaction that stores the upload: a settings change after the upload
// does not change whether it is transcribed.
type UploadWork struct {
	Transcribe bool `json:"transcribe"`
	// Provider is the transcription provider, or nil for the default engine.
	Provider *string `json:"provider,omitempty"`
}

// AutoTranscribe is the EventHandler that starts a transcription when a
// recording is uploaded and its project transcribed uploads automatically
// at that moment. Events stored without their work read the settings now.
// Errors of the transcription never fail the upload: they end in the
// transcription's own failed status.
func (p *Pipeline) AutoTranscribe(ctx context.Context, e *store.Event) error {
	if e.Type != "recording.uploaded" {
		return nil
	}
	var data struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(e.Data, &data); err != nil {
		return err
	}
	var work UploadWork
	if e.Work != nil {
		if err := json.Unmarshal(e.Work, &work); err != nil {
			return err
		}
	} else {
		var err error
		if work.Transcribe, work.Provider, err = p.AutoTranscription(ctx, e.Tenant); err != nil {
			return err
		}
	}
	if !work.Transcribe {
		return nil
	}
	rec, err := p.Store.Recording(ctx, e.Tenant, data.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.TranscriptionID != nil {
		return nil // already transcribed or asked for
	}
	_, _, err = p.Request(ctx, e.Tenant, rec.ID, Options{Provider: work.Provider})
	if errors.Is(err, ErrNotUploaded) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}
