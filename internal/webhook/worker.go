package webhook

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river"

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/jobs"
	"github.com/botaserver/bota/internal/store"
)

// QueueName is the River queue that deliveries run on.
const QueueName = "webhooks"

// jobTimeout bounds one run of a delivery job: the attempt itself
// (DefaultTimeout) plus the database work around it.
const jobTimeout = DefaultTimeout + 30*time.Second

// leaseTTL is how long a concurrency slot stays taken when its holder dies
// without releasing it. It exceeds jobTimeout, after which River cancels the
// job, so a slot expires only after its job has ended.
const leaseTTL = jobTimeout + 15*time.Second

// snoozeBase and snoozeJitter set how long a job waits for a free slot of
// its endpoint before it looks again. The job gives its worker back while
// it waits, so other endpoints' deliveries run meanwhile.
const (
	snoozeBase   = time.Second
	snoozeJitter = time.Second
)

// DeliverArgs is the job of one delivery. Scheduled deliveries have
// Redelivery 0, and each manual retry uses the next number, so a manual
// retry can run while the scheduled retries wait.
type DeliverArgs struct {
	DeliveryID string `json:"delivery_id" river:"unique"`
	Redelivery int    `json:"redelivery" river:"unique"`
}

// Kind names the job kind in River's table.
func (DeliverArgs) Kind() string { return "webhook_delivery" }

// InsertOpts puts deliveries on the webhooks queue, with one attempt per
// step of the retry schedule and at most one active job per key.
func (DeliverArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue:       QueueName,
		MaxAttempts: jobs.WebhookRetrySchedule.MaxAttempts(),
		UniqueOpts:  jobs.UniqueWhileActive(),
	}
}

// Worker runs delivery jobs.
type Worker struct {
	river.WorkerDefaults[DeliverArgs]
	Service *Service
}

// Timeout bounds one run of the job.
func (w *Worker) Timeout(*river.Job[DeliverArgs]) time.Duration { return jobTimeout }

// NextRetry schedules the retry after a failed attempt by
// jobs.WebhookRetrySchedule, on the Service's clock.
func (w *Worker) NextRetry(job *river.Job[DeliverArgs]) time.Time {
	return w.Service.nextRetry(len(job.Errors))
}

// Work makes one attempt of the delivery. It returns an error, so that
// River retries it, only after a failed attempt that has retries left.
func (w *Worker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	return w.Service.Deliver(ctx, job.Args, len(job.Errors), job.Attempt >= job.MaxAttempts)
}

// nextRetry returns when the retry after failures+1 failed attempts runs.
func (s *Service) nextRetry(failures int) time.Time {
	return s.now().Add(jobs.WebhookRetrySchedule.Delay(failures + 1))
}

// Deliver makes one attempt of a delivery and records it. failures is the
// number of failed runs of this job before this one, and final is true on
// its last allowed run. A deleted delivery or endpoint ends the job, a
// disabled endpoint fails the delivery without an attempt, and an endpoint
// whose concurrency slots are all taken snoozes the job.
func (s *Service) Deliver(ctx context.Context, args DeliverArgs, failures int, final bool) error {
	log := s.log().With("delivery_id", args.DeliveryID)
	d, err := s.Store.WebhookDeliveryByID(ctx, args.DeliveryID)
	if errors.Is(err, store.ErrNotFound) {
		log.Debug("WebhookDeliveryGone")
		return nil
	}
	if err != nil {
		return err
	}
	if d.Status == store.DeliverySucceeded {
		// A manual retry succeeded before this scheduled one ran.
		if d.NextAttemptAt != nil && args.Redelivery == 0 {
			return s.Store.SetWebhookDeliveryStatus(ctx, d.ID, d.Status, nil)
		}
		return nil
	}
	ep, err := s.Store.WebhookEndpoint(ctx, d.Tenant, d.EndpointID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if ep.Status != store.WebhookEnabled {
		log.Info("WebhookDeliverySkipped", "endpoint_id", ep.ID, "reason", "endpoint disabled")
		return s.Store.SetWebhookDeliveryStatus(ctx, d.ID, store.DeliveryFailed, nil)
	}
	event, err := s.Store.EventByID(ctx, d.Tenant, d.EventID)
	if err != nil {
		return fmt.Errorf("load event %s of delivery %s: %w", d.EventID, d.ID, err)
	}
	body, err := EventBody(event)
	if err != nil {
		return err
	}
	secrets, err := s.signingSecrets(ep)
	if err != nil {
		return err
	}

	holder := ids.New("lease")
	slot, ok, err := s.Store.AcquireWebhookLease(ctx, ep.ID, s.concurrency(), holder,
		s.now().Add(leaseTTL))
	if err != nil {
		return err
	}
	if !ok {
		return river.JobSnooze(snoozeBase + rand.N(snoozeJitter))
	}
	defer func() {
		err := s.Store.ReleaseWebhookLease(context.WithoutCancel(ctx), ep.ID, slot, holder)
		if err != nil {
			log.Warn("WebhookLeaseReleaseFailed", "endpoint_id", ep.ID, "err", err)
		}
	}()

	at := s.now()
	attempt := Send(ctx, s.client(), Delivery{
		URL: ep.URL, EventID: event.ID, Body: body, Secrets: secrets, Now: at,
	})
	if !attempt.Succeeded() && ctx.Err() != nil {
		// The job was cancelled (server shutdown or job timeout), so the
		// attempt is not held against the endpoint. River runs it again.
		return ctx.Err()
	}
	return s.record(ctx, d, ep, args, attempt, at, failures, final)
}

// record stores an attempt, updates the endpoint's failure tracking and
// disables the endpoint once it has failed for DisableAfter.
func (s *Service) record(ctx context.Context, d *store.WebhookDelivery, ep *store.WebhookEndpoint,
	args DeliverArgs, attempt Attempt, at time.Time, failures int, final bool) error {
	ok := attempt.Succeeded()
	row := store.WebhookAttempt{
		AttemptedAt:     at,
		DurationMs:      attempt.Duration.Milliseconds(),
		ResponseSnippet: attempt.ResponseSnippet,
	}
	if attempt.StatusCode != 0 {
		code := attempt.StatusCode
		row.StatusCode = &code
	}
	if !ok {
		msg := attempt.Error
		row.Error = &msg
	}

	status, next := store.DeliverySucceeded, (*time.Time)(nil)
	switch {
	case ok:
	case args.Redelivery > 0 && d.NextAttemptAt != nil && d.NextAttemptAt.After(at):
		// A manual retry failed while a scheduled retry still waits.
		status, next = store.DeliveryPending, d.NextAttemptAt
	case args.Redelivery > 0 || final:
		status = store.DeliveryFailed
	default:
		retry := s.nextRetry(failures)
		status, next = store.DeliveryPending, &retry
	}

	disabled := false
	err := s.Store.InTx(ctx, func(tx *store.Store) error {
		since, err := tx.RecordWebhookEndpointResult(ctx, ep.ID, ok, at)
		if err != nil {
			return err
		}
		if !ok && since != nil && ShouldDisable(*since, at) {
			reason := fmt.Sprintf("Every delivery attempt failed from %s to %s; last error: %s",
				since.UTC().Format(timeFormat), at.UTC().Format(timeFormat), attempt.Error)
			if err := tx.DisableWebhookEndpoint(ctx, ep.ID, reason); err != nil {
				return err
			}
			disabled = true
			status, next = store.DeliveryFailed, nil
		}
		return tx.AddWebhookAttempt(ctx, d.ID, row, status, next)
	})
	if err != nil {
		return err
	}

	log := s.log().With("delivery_id", d.ID, "endpoint_id", ep.ID, "event_id", d.EventID)
	switch {
	case ok:
		log.Debug("WebhookDelivered", "status_code", attempt.StatusCode,
			"duration_ms", row.DurationMs)
		return nil
	case disabled:
		log.Warn("WebhookEndpointDisabled", "err", attempt.Error)
		return nil
	case status == store.DeliveryFailed:
		log.Info("WebhookDeliveryFailed", "err", attempt.Error)
		return nil
	}
	log.Info("WebhookAttemptFailed", "err", attempt.Error, "next_attempt_at", next)
	return fmt.Errorf("webhook delivery %s: %s", d.ID, attempt.Error)
}

// signingSecrets returns the endpoint's secrets that sign now, newest
// first: the current one, and the previous one during a rotation overlap.
func (s *Service) signingSecrets(ep *store.WebhookEndpoint) ([]string, error) {
	current, err := s.Box.Open(ep.ID, ep.Secret)
	if err != nil {
		return nil, err
	}
	secrets := []string{current}
	if ep.OldSecret != nil && ep.OldSecretExpiresAt != nil && ep.OldSecretExpiresAt.After(s.now()) {
		old, err := s.Box.Open(ep.ID, *ep.OldSecret)
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, old)
	}
	return secrets, nil
}
