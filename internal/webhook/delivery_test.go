package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/webhook"
	"github.com/botaserver/bota/webhooksig"
)

// jobFor builds the job River would hand the worker on the given 1-based
// attempt, after attempt-1 failures.
func jobFor(deliveryID string, attempt int) *river.Job[webhook.DeliverArgs] {
	return &river.Job[webhook.DeliverArgs]{
		JobRow: &rivertype.JobRow{
			Attempt:     attempt,
			MaxAttempts: 6,
			Errors:      make([]rivertype.AttemptError, attempt-1),
		},
		Args: webhook.DeliverArgs{DeliveryID: deliveryID},
	}
}

func TestFourthAttemptDelivers(t *testing.T) {
	eachDB(t, func(t *testing.T, backend string) {
		env := newDeliveryEnv(t, backend, 0)
		ctx := context.Background()
		rcv := newReceiver(t, func(n int) int {
			if n <= 3 {
				return 500
			}
			return 200
		})
		ep, secret := env.addEndpoint(t, rcv.URL+"/hook")
		ev := env.addEvent(t, "recording.created", map[string]any{"id": "rec_1"})
		d := env.onlyDelivery(t, ep.ID)

		delays := []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute}
		var sentAt []time.Time
		for attempt := 1; attempt <= 4; attempt++ {
			job := jobFor(d.ID, attempt)
			sentAt = append(sentAt, env.Clock.Now())
			err := env.Worker.Work(ctx, job)
			if attempt == 4 {
				if err != nil {
					t.Fatalf("attempt 4: Work = %v, want nil", err)
				}
				break
			}
			if err == nil {
				t.Fatalf("attempt %d: Work = nil, want an error so River retries", attempt)
			}
			want := env.Clock.Now().Add(delays[attempt-1])
			if got := env.Worker.NextRetry(job); !got.Equal(want) {
				t.Errorf("attempt %d: NextRetry = %s, want %s", attempt, got, want)
			}
			row, err := env.Store.WebhookDeliveryByID(ctx, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			if row.Status != store.DeliveryPending || row.NextAttemptAt == nil ||
				!row.NextAttemptAt.Equal(want) {
				t.Errorf("attempt %d: delivery status %s, next %v; want pending, %s",
					attempt, row.Status, row.NextAttemptAt, want)
			}
			env.Clock.Advance(delays[attempt-1])
		}

		reqs := rcv.requests()
		if len(reqs) != 4 {
			t.Fatalf("receiver got %d requests, want 4", len(reqs))
		}
		seen := map[string]bool{}
		for i, r := range reqs {
			if got := r.Header.Get(webhooksig.EventIDHeader); got != ev.ID {
				t.Errorf("request %d: event id header %q, want %s", i+1, got, ev.ID)
			}
			var body struct{ ID string }
			if err := json.Unmarshal(r.Body, &body); err != nil || body.ID != ev.ID {
				t.Errorf("request %d: body id %q (%v), want %s", i+1, body.ID, err, ev.ID)
			}
			if !bytes.Equal(r.Body, reqs[0].Body) {
				t.Errorf("request %d: body differs from the first attempt's", i+1)
			}
			ts := r.Header.Get(webhooksig.TimestampHeader)
			if want := strconv.FormatInt(sentAt[i].Unix(), 10); ts != want {
				t.Errorf("request %d: timestamp %s, want %s (the clock at the attempt)", i+1, ts, want)
			}
			if seen[ts] {
				t.Errorf("request %d: timestamp %s repeats an earlier attempt's", i+1, ts)
			}
			seen[ts] = true
			sig := r.Header.Get(webhooksig.SignatureHeader)
			if strings.Count(sig, "v1=") != 1 {
				t.Errorf("request %d: signature %q, want exactly one v1 entry", i+1, sig)
			}
			if err := webhooksig.Verify(secret, r.Header, r.Body, sentAt[i], 0); err != nil {
				t.Errorf("request %d: signature does not verify: %v", i+1, err)
			}
		}

		final := env.onlyDelivery(t, ep.ID)
		if final.Status != store.DeliverySucceeded || final.AttemptCount != 4 || final.NextAttemptAt != nil {
			t.Errorf("delivery = %s with %d attempts, next %v; want succeeded, 4, nil",
				final.Status, final.AttemptCount, final.NextAttemptAt)
		}
		wantCodes := []int{500, 500, 500, 200}
		for i, a := range final.Attempts {
			if a.StatusCode == nil || *a.StatusCode != wantCodes[i] {
				t.Errorf("attempt %d: status code %v, want %d", i+1, a.StatusCode, wantCodes[i])
			}
			if (a.Error == nil) != (i == 3) {
				t.Errorf("attempt %d: error %v", i+1, a.Error)
			}
			if !a.AttemptedAt.Equal(sentAt[i]) {
				t.Errorf("attempt %d: attempted_at %s, want %s", i+1, a.AttemptedAt, sentAt[i])
			}
		}
	})
}

func TestFanoutTwiceAddsNothing(t *testing.T) {
	eachDB(t, func(t *testing.T, backend string) {
		env := newDeliveryEnv(t, backend, 0)
		ctx := context.Background()
		all, _ := env.addEndpoint(t, "http://127.0.0.1:1/all")
		only, _ := env.addEndpoint(t, "http://127.0.0.1:1/only", "recording.deleted")
		ev := env.addEvent(t, "recording.created", map[string]any{})
		if err := env.Service.Fanout(ctx, ev); err != nil {
			t.Fatalf("second fan-out: %v", err)
		}

		env.onlyDelivery(t, all.ID)
		ds, _, err := env.Store.WebhookDeliveries(ctx, env.Tenant, only.ID, nil, store.Page{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 0 {
			t.Errorf("endpoint subscribed to recording.deleted got %d deliveries", len(ds))
		}
		stats, err := env.Queue.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := stats[rivertype.JobStateAvailable]; n != 1 {
			t.Errorf("available jobs = %d, want 1", n)
		}
	})
}

func TestDisabledAfterThreeDays(t *testing.T) {
	eachDB(t, func(t *testing.T, backend string) {
		env := newDeliveryEnv(t, backend, 0)
		ctx := context.Background()
		rcv := newReceiver(t, func(int) int { return 503 })
		ep, _ := env.addEndpoint(t, rcv.URL)

		env.addEvent(t, "recording.created", map[string]any{})
		first := env.onlyDelivery(t, ep.ID)
		if err := env.Worker.Work(ctx, jobFor(first.ID, 1)); err == nil {
			t.Fatal("first attempt: Work = nil, want an error")
		}
		env.Clock.Advance(webhook.DisableAfter - time.Minute)
		second := env.addEvent(t, "recording.deleted", map[string]any{})
		ds, _, err := env.Store.WebhookDeliveries(ctx, env.Tenant, ep.ID, nil, store.Page{Limit: 10})
		if err != nil || len(ds) != 2 || ds[0].EventID != second.ID {
			t.Fatalf("deliveries = %d (%v), want 2 with the newest first", len(ds), err)
		}
		if err := env.Worker.Work(ctx, jobFor(ds[0].ID, 1)); err == nil {
			t.Fatal("attempt before 3 days: Work = nil, want an error")
		}
		if got, _ := env.Store.WebhookEndpoint(ctx, env.Tenant, ep.ID); got.Status != store.WebhookEnabled {
			t.Fatalf("endpoint %s before 3 days of failures", got.Status)
		}

		env.Clock.Advance(time.Minute)
		if err := env.Worker.Work(ctx, jobFor(first.ID, 2)); err != nil {
			t.Fatalf("attempt that disables: Work = %v, want nil (no more retries)", err)
		}
		got, err := env.Store.WebhookEndpoint(ctx, env.Tenant, ep.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != store.WebhookDisabled || got.DisabledReason == nil ||
			!strings.Contains(*got.DisabledReason, "HTTP 503") {
			t.Fatalf("endpoint status %s, reason %v; want disabled naming HTTP 503",
				got.Status, got.DisabledReason)
		}
		sent := len(rcv.requests())
		if err := env.Worker.Work(ctx, jobFor(ds[0].ID, 2)); err != nil {
			t.Fatalf("delivery to a disabled endpoint: Work = %v", err)
		}
		if n := len(rcv.requests()); n != sent {
			t.Errorf("disabled endpoint got %d more requests", n-sent)
		}
		if d, _ := env.Store.WebhookDeliveryByID(ctx, ds[0].ID); d.Status != store.DeliveryFailed {
			t.Errorf("delivery to a disabled endpoint is %s, want failed", d.Status)
		}
		env.addEvent(t, "recording.created", map[string]any{})
		ds, _, _ = env.Store.WebhookDeliveries(ctx, env.Tenant, ep.ID, nil, store.Page{Limit: 10})
		if len(ds) != 2 {
			t.Errorf("disabled endpoint has %d deliveries after a new event, want 2", len(ds))
		}
	})
}

func TestSuccessResetsFailureClock(t *testing.T) {
	eachDB(t, func(t *testing.T, backend string) {
		env := newDeliveryEnv(t, backend, 0)
		ctx := context.Background()
		var fail atomic.Bool
		rcv := newReceiver(t, func(int) int {
			if fail.Load() {
				return 500
			}
			return 204
		})
		ep, _ := env.addEndpoint(t, rcv.URL)
		attempt := func() {
			t.Helper()
			env.addEvent(t, "recording.created", map[string]any{})
			ds, _, err := env.Store.WebhookDeliveries(ctx, env.Tenant, ep.ID, nil, store.Page{Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			_ = env.Worker.Work(ctx, jobFor(ds[0].ID, 1))
		}
		fail.Store(true)
		attempt()
		env.Clock.Advance(time.Hour)
		fail.Store(false)
		attempt()
		env.Clock.Advance(webhook.DisableAfter)
		fail.Store(true)
		attempt()

		got, err := env.Store.WebhookEndpoint(ctx, env.Tenant, ep.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != store.WebhookEnabled {
			t.Errorf("endpoint %s (%v), want enabled: a success came in between",
				got.Status, got.DisabledReason)
		}
		if got.FailingSince == nil || !got.FailingSince.Equal(env.Clock.Now()) {
			t.Errorf("failing_since = %v, want %s", got.FailingSince, env.Clock.Now())
		}
	})
}

func TestDeletedEndpointGetsNothing(t *testing.T) {
	eachDB(t, func(t *testing.T, backend string) {
		env := newDeliveryEnv(t, backend, 0)
		ctx := context.Background()
		rcv := newReceiver(t, func(int) int { return 200 })
		ep, _ := env.addEndpoint(t, rcv.URL)
		env.addEvent(t, "recording.created", map[string]any{})
		d := env.onlyDelivery(t, ep.ID)

		if err := env.Store.DeleteWebhookEndpoint(ctx, env.Tenant, ep.ID); err != nil {
			t.Fatal(err)
		}
		if err := env.Worker.Work(ctx, jobFor(d.ID, 1)); err != nil {
			t.Errorf("Work after delete = %v, want nil", err)
		}
		if n := len(rcv.requests()); n != 0 {
			t.Errorf("deleted endpoint got %d requests", n)
		}
	})
}

func TestRotationOverlapSigns(t *testing.T) {
	eachDB(t, func(t *testing.T, backend string) {
		env := newDeliveryEnv(t, backend, 0)
		ctx := context.Background()
		rcv := newReceiver(t, func(int) int { return 200 })
		ep, oldSecret := env.addEndpoint(t, rcv.URL)
		newSecret := webhook.NewSecret()
		sealed, err := env.Service.Box.Seal(ep.ID, newSecret)
		if err != nil {
			t.Fatal(err)
		}
		until := env.Clock.Now().Add(time.Hour)
		err = env.Store.SetWebhookEndpointSecret(ctx, env.Tenant, ep.ID, sealed, &ep.Secret, &until)
		if err != nil {
			t.Fatal(err)
		}

		send := func() captured {
			t.Helper()
			env.addEvent(t, "recording.created", map[string]any{})
			ds, _, _ := env.Store.WebhookDeliveries(ctx, env.Tenant, ep.ID, nil, store.Page{Limit: 1})
			if err := env.Worker.Work(ctx, jobFor(ds[0].ID, 1)); err != nil {
				t.Fatalf("Work = %v", err)
			}
			reqs := rcv.requests()
			return reqs[len(reqs)-1]
		}
		during := send()
		entries := strings.Fields(during.Header.Get(webhooksig.SignatureHeader))
		if len(entries) != 2 {
			t.Fatalf("signature during overlap %q, want two entries", entries)
		}
		now := env.Clock.Now()
		for _, secret := range []string{newSecret, oldSecret} {
			if err := webhooksig.Verify(secret, during.Header, during.Body, now, 0); err != nil {
				t.Errorf("overlap: secret %s... does not verify: %v", secret[:10], err)
			}
		}
		newOnly := http1(during, entries[0])
		if err := webhooksig.Verify(newSecret, newOnly, during.Body, now, 0); err != nil {
			t.Errorf("first entry is not the new secret's signature: %v", err)
		}

		env.Clock.Advance(time.Hour + time.Second)
		after := send()
		if sig := after.Header.Get(webhooksig.SignatureHeader); strings.Count(sig, "v1=") != 1 {
			t.Errorf("signature after overlap %q, want one entry", sig)
		}
		now = env.Clock.Now()
		if err := webhooksig.Verify(newSecret, after.Header, after.Body, now, 0); err != nil {
			t.Errorf("after overlap: new secret does not verify: %v", err)
		}
		if err := webhooksig.Verify(oldSecret, after.Header, after.Body, now, 0); err == nil {
			t.Error("after overlap: old secret still verifies")
		}
	})
}

// http1 returns a copy of r's headers whose signature is only entry.
func http1(r captured, entry string) map[string][]string {
	h := r.Header.Clone()
	h.Set(webhooksig.SignatureHeader, entry)
	return h
}

func TestRedeliverAfterFailure(t *testing.T) {
	eachDB(t, func(t *testing.T, backend string) {
		env := newDeliveryEnv(t, backend, 0)
		ctx := context.Background()
		rcv := newReceiver(t, func(n int) int {
			if n == 1 {
				return 500
			}
			return 200
		})
		ep, _ := env.addEndpoint(t, rcv.URL)
		env.addEvent(t, "recording.created", map[string]any{})
		d := env.onlyDelivery(t, ep.ID)
		if err := env.Worker.Work(ctx, jobFor(d.ID, 6)); err != nil {
			t.Fatalf("last attempt: Work = %v, want nil", err)
		}
		if got := env.onlyDelivery(t, ep.ID); got.Status != store.DeliveryFailed {
			t.Fatalf("delivery after its last attempt failed is %s, want failed", got.Status)
		}

		got, err := env.Service.Redeliver(ctx, env.Tenant, ep.ID, d.ID)
		if err != nil {
			t.Fatalf("Redeliver: %v", err)
		}
		if got.Status != store.DeliveryPending {
			t.Errorf("delivery after Redeliver is %s, want pending", got.Status)
		}
		job := &river.Job[webhook.DeliverArgs]{
			JobRow: &rivertype.JobRow{Attempt: 1, MaxAttempts: 1},
			Args:   webhook.DeliverArgs{DeliveryID: d.ID, Redelivery: 1},
		}
		if err := env.Worker.Work(ctx, job); err != nil {
			t.Fatalf("redelivery: Work = %v", err)
		}
		final := env.onlyDelivery(t, ep.ID)
		if final.Status != store.DeliverySucceeded || len(final.Attempts) != 2 {
			t.Errorf("delivery %s with %d attempts, want succeeded with 2",
				final.Status, len(final.Attempts))
		}
		reqs := rcv.requests()
		if len(reqs) != 2 || !bytes.Equal(reqs[0].Body, reqs[1].Body) {
			t.Errorf("receiver got %d requests; a redelivery must send the same body", len(reqs))
		}
	})
}

func TestLeaseSlots(t *testing.T) {
	eachDB(t, func(t *testing.T, backend string) {
		env := newDeliveryEnv(t, backend, 0)
		ctx := context.Background()
		until := env.Clock.Now().Add(time.Minute)
		for i := range 3 {
			slot, ok, err := env.Store.AcquireWebhookLease(ctx, "we_a", 3, "h"+strconv.Itoa(i), until)
			if err != nil || !ok || slot != i {
				t.Fatalf("acquire %d = slot %d, %v, %v; want slot %d", i, slot, ok, err, i)
			}
		}
		if _, ok, err := env.Store.AcquireWebhookLease(ctx, "we_a", 3, "h3", until); ok || err != nil {
			t.Fatalf("acquire past the limit = %v, %v; want no slot", ok, err)
		}
		if _, ok, _ := env.Store.AcquireWebhookLease(ctx, "we_b", 3, "b0", until); !ok {
			t.Fatal("another endpoint's slots are taken by we_a's leases")
		}
		if err := env.Store.ReleaseWebhookLease(ctx, "we_a", 1, "someone else"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := env.Store.AcquireWebhookLease(ctx, "we_a", 3, "h4", until); ok {
			t.Fatal("a release by another holder freed the slot")
		}
		if err := env.Store.ReleaseWebhookLease(ctx, "we_a", 1, "h1"); err != nil {
			t.Fatal(err)
		}
		if slot, ok, _ := env.Store.AcquireWebhookLease(ctx, "we_a", 3, "h5", until); !ok || slot != 1 {
			t.Fatalf("acquire after release = slot %d, %v; want slot 1", slot, ok)
		}
		env.Clock.Advance(time.Minute + time.Millisecond)
		slot, ok, err := env.Store.AcquireWebhookLease(ctx, "we_a", 3, "h6", env.Clock.Now().Add(time.Minute))
		if err != nil || !ok || slot != 0 {
			t.Fatalf("acquire after expiry = slot %d, %v, %v; want slot 0", slot, ok, err)
		}
	})
}
