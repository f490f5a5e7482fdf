package webhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/webhook"
	"github.com/botaserver/bota/webhooksig"
)

// hurryRetry makes the delivery job that waits for a retry available now,
// so a test need not wait out the retry schedule. It reports whether a job
// was waiting.
func hurryRetry(t *testing.T, env *deliveryEnv) bool {
	t.Helper()
	q := `UPDATE river_job SET state = 'available', scheduled_at = datetime('now', 'subsec', '-1 seconds')
		WHERE kind = 'webhook_delivery' AND state IN ('retryable', 'scheduled')`
	if env.Backend == "postgres" {
		q = `UPDATE river_job SET state = 'available', scheduled_at = now() - interval '1 second'
			WHERE kind = 'webhook_delivery' AND state IN ('retryable', 'scheduled')`
	}
	res, err := env.Store.DB().ExecContext(context.Background(), q)
	if err != nil {
		t.Fatalf("hurry retry: %v", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestQueueRetriesUntilDelivered(t *testing.T) {
	eachDB(t, func(t *testing.T, backend string) {
		env := newDeliveryEnv(t, backend, 4)
		rcv := newReceiver(t, func(n int) int {
			if n <= 3 {
				return 500
			}
			return 200
		})
		ep, secret := env.addEndpoint(t, rcv.URL)
		ev := env.addEvent(t, "transcription.completed", map[string]any{"id": "txn_1"})

		deadline := time.Now().Add(60 * time.Second)
		for len(rcv.requests()) < 4 && time.Now().Before(deadline) {
			hurryRetry(t, env)
			time.Sleep(50 * time.Millisecond)
		}
		reqs := rcv.requests()
		if len(reqs) != 4 {
			t.Fatalf("receiver got %d requests in 60 s, want 4", len(reqs))
		}
		for i, r := range reqs {
			if got := r.Header.Get(webhooksig.EventIDHeader); got != ev.ID {
				t.Errorf("request %d: event id %q, want %s", i+1, got, ev.ID)
			}
		}
		last := reqs[3]
		if err := webhooksig.Verify(secret, last.Header, last.Body, time.Now(), 0); err != nil {
			t.Errorf("fourth request does not verify: %v", err)
		}

		var d *store.WebhookDelivery
		for time.Now().Before(deadline) {
			d = env.onlyDelivery(t, ep.ID)
			if d.Status == store.DeliverySucceeded {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if d.Status != store.DeliverySucceeded || len(d.Attempts) != 4 {
			t.Errorf("delivery %s with %d attempts, want succeeded with 4", d.Status, len(d.Attempts))
		}
	})
}

// TestSlowEndpointCapped checks that a slow endpoint holds at most its
// concurrency limit of workers while another endpoint's deliveries run.
func TestSlowEndpointCapped(t *testing.T) {
	eachDB(t, func(t *testing.T, backend string) {
		env := newDeliveryEnv(t, backend, 6)
		env.Service.EndpointConcurrency = 2
		// The slow endpoint's requests stay open until the fast endpoint
		// has all its deliveries. On a loaded machine that may take longer
		// than the usual 5 s timeout, which would free their leases early.
		env.Service.Client = webhook.NewClient(webhook.GuardConfig{AllowPrivate: true, Timeout: 2 * time.Minute})

		var inFlight, peak atomic.Int32
		release := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			<-release
			inFlight.Add(-1)
		}))
		t.Cleanup(slow.Close)
		var releaseOnce sync.Once
		t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
		fast := newReceiver(t, func(int) int { return 200 })

		slowEP, _ := env.addEndpoint(t, slow.URL)
		env.addEndpoint(t, fast.URL)
		const events = 8
		for range events {
			env.addEvent(t, "recording.created", map[string]any{})
		}

		deadline := time.Now().Add(30 * time.Second)
		for len(fast.requests()) < events && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := len(fast.requests()); n != events {
			t.Fatalf("fast endpoint got %d of %d deliveries while the slow one blocked", n, events)
		}
		if p := peak.Load(); p != 2 {
			t.Errorf("slow endpoint peak concurrency = %d, want 2", p)
		}

		releaseOnce.Do(func() { close(release) })
		for time.Now().Before(deadline) {
			ds, _, err := env.Store.WebhookDeliveries(context.Background(), env.Tenant, slowEP.ID,
				ptr(store.DeliverySucceeded), store.Page{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) == events {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		ds, _, _ := env.Store.WebhookDeliveries(context.Background(), env.Tenant, slowEP.ID,
			ptr(store.DeliverySucceeded), store.Page{Limit: 100})
		if len(ds) != events {
			t.Errorf("slow endpoint: %d of %d deliveries succeeded", len(ds), events)
		}
		if p := peak.Load(); p != 2 {
			t.Errorf("slow endpoint peak concurrency = %d, want 2", p)
		}
	})
}

func ptr[T any](v T) *T { return &v }
