package jobs

import (
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// ActiveStates are the job states in which a job still has work ahead of it:
// waiting, queued, running, or waiting for a retry.
func ActiveStates() []rivertype.JobState {
	return []rivertype.JobState{
		rivertype.JobStateAvailable,
		rivertype.JobStatePending,
		rivertype.JobStateRetryable,
		rivertype.JobStateRunning,
		rivertype.JobStateScheduled,
	}
}

// UniqueWhileActive returns unique options that allow at most one active job
// (see ActiveStates) per kind and key. The key is the args fields tagged
// `river:"unique"`, for example
//
//	RecordingID string `json:"recording_id" river:"unique"`
//
// or every args field when none is tagged. Once the job completes, is
// cancelled or is discarded, a new job with the same key may be inserted.
// River enforces this with a unique index, so it holds across processes.
func UniqueWhileActive() river.UniqueOpts {
	return river.UniqueOpts{ByArgs: true, ByState: ActiveStates()}
}

// RetrySchedule is a list of delays between a failed attempt and the next
// one: the first failure waits RetrySchedule[0], the second
// RetrySchedule[1], and failures past the end wait the last delay. A worker
// uses it from its NextRetry method:
//
//	func (w *DeliveryWorker) NextRetry(job *river.Job[DeliveryArgs]) time.Time {
//		return jobs.WebhookRetrySchedule.NextRetry(job.JobRow)
//	}
//
// The schedule sets only the delays. The kind's max attempts (InsertOpts)
// sets how many attempts there are; MaxAttempts() gives one attempt plus one
// per delay.
type RetrySchedule []time.Duration

// WebhookRetrySchedule is the schedule for webhook deliveries: retries 1
// minute, 5 minutes, 30 minutes, 2 hours and 8 hours after each failure.
var WebhookRetrySchedule = RetrySchedule{
	time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 8 * time.Hour,
}

// Delay returns the wait after the given failure, counted from 1.
func (s RetrySchedule) Delay(failure int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := min(max(failure, 1), len(s)) - 1
	return s[i]
}

// NextRetry returns when job, which has just failed, runs again. It counts
// failures from the job's recorded errors rather than its attempt number,
// because River lowers the attempt number when a job snoozes. An empty
// schedule returns the zero time, which makes River use its client-wide
// retry policy.
func (s RetrySchedule) NextRetry(job *rivertype.JobRow) time.Time {
	if len(s) == 0 {
		return time.Time{}
	}
	// River calls NextRetry before it appends the current failure to Errors.
	return time.Now().Add(s.Delay(len(job.Errors) + 1))
}

// MaxAttempts returns the number of attempts that uses every delay once.
func (s RetrySchedule) MaxAttempts() int { return len(s) + 1 }
