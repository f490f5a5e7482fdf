package processing

import (
	"context"
	"database/sql"
	"time"

	"github.com/riverqueue/river"

	"github.com/botaserver/bota/internal/jobs"
)

// SpeechQueue is the queue transcription jobs run on.
const SpeechQueue = "speech"

// TranscribeArgs is a transcription job, unique per transcription while
// queued or running, so inserting it again (the dispatcher's requeue)
// never runs a transcription twice. Pipeline.Request keeps a recording to
// one pending or processing transcription. The job of a finished
// transcription can still be running in River for a moment after the
// transcription completed, so a key per recording would drop the job of
// the recording's next transcription.
type TranscribeArgs struct {
	TranscriptionID string `json:"transcription_id" river:"unique"`
	RecordingID     string `json:"recording_id"`
}

// Kind names the job kind in River's table.
func (TranscribeArgs) Kind() string { return "transcribe" }

// InsertOpts puts transcriptions on the speech queue with five attempts.
func (TranscribeArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: SpeechQueue, MaxAttempts: 5, UniqueOpts: jobs.UniqueWhileActive()}
}

// TranscribeWorker runs transcription jobs.
type TranscribeWorker struct {
	river.WorkerDefaults[TranscribeArgs]
	Pipeline *Pipeline
	// Limit bounds an attempt on audio of unknown or no length. An attempt
	// on longer audio gets Limit plus the audio's duration.
	Limit time.Duration
	// MaxLimit caps any attempt, and counts when the duration is unknown.
	// Zero means Limit.
	MaxLimit time.Duration
}

// Timeout bounds one attempt by the recording's duration, read from the
// store: a recorder's all-day recording takes far longer than a clip.
func (w *TranscribeWorker) Timeout(job *river.Job[TranscribeArgs]) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var durationMs *int64
	if tr, err := w.Pipeline.Store.TranscriptionByID(ctx, job.Args.TranscriptionID); err == nil {
		if rec, err := w.Pipeline.Store.Recording(ctx, tr.Tenant, tr.RecordingID); err == nil {
			durationMs = rec.DurationMs
		}
	}
	return AttemptTimeout(w.Limit, w.MaxLimit, durationMs)
}

// AttemptTimeout returns limit plus the audio's duration, at most
// maxLimit, or maxLimit when the duration is unknown. A zero maxLimit
// means limit.
func AttemptTimeout(limit, maxLimit time.Duration, durationMs *int64) time.Duration {
	if maxLimit < limit {
		maxLimit = limit
	}
	if durationMs == nil {
		return maxLimit
	}
	return min(maxLimit, limit+time.Duration(max(0, *durationMs))*time.Millisecond)
}

// Work runs one attempt; the last attempt records a failure for good.
// A job that River discards without running Work to the end (a panic on
// the last attempt, or a rescue of a dead node's job that had no attempt
// left) leaves its transcription processing until the dispatcher queues it
// again, two hours after its last update.
func (w *TranscribeWorker) Work(ctx context.Context, job *river.Job[TranscribeArgs]) error {
	return w.Pipeline.Run(ctx, job.Args.TranscriptionID, job.Attempt >= job.MaxAttempts)
}

// RiverQueue inserts transcription jobs into a jobs.Queue.
type RiverQueue struct{ Queue *jobs.Queue }

// EnqueueTranscription inserts the job, inside tx when given. A job
// already queued or running for the transcription is kept, and the insert
// does nothing.
func (q RiverQueue) EnqueueTranscription(ctx context.Context, tx *sql.Tx, transcriptionID, recordingID string) error {
	args := TranscribeArgs{TranscriptionID: transcriptionID, RecordingID: recordingID}
	if tx != nil {
		_, _, err := q.Queue.InsertTx(ctx, tx, args, nil)
		return err
	}
	_, _, err := q.Queue.Insert(ctx, args, nil)
	return err
}
