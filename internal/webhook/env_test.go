package webhook_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/jobs"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/store/postgres"
	"github.com/botaserver/bota/internal/store/sqlite"
	"github.com/botaserver/bota/internal/testenv"
	"github.com/botaserver/bota/internal/webhook"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopAll()
	os.Exit(code)
}

// fakeClock is a settable clock shared by the store and the service.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Now().Truncate(time.Millisecond)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// deliveryEnv is a migrated database with a job queue and a webhook
// service on it.
type deliveryEnv struct {
	Backend string
	Store   *store.Store
	Queue   *jobs.Queue
	Service *webhook.Service
	Worker  *webhook.Worker
	Clock   *fakeClock
	Tenant  model.Tenant
}

// eachDB runs fn as a parallel subtest on SQLite and on PostgreSQL.
func eachDB(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Helper()
	for _, b := range []string{"sqlite", "postgres"} {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// newDeliveryEnv opens a fresh database of backend. With workers > 0 the
// queue works the webhooks queue with that many workers and uses the real
// clock, otherwise it only inserts jobs and the service runs on a fake
// clock that the test drives.
func newDeliveryEnv(t *testing.T, backend string, workers int) *deliveryEnv {
	t.Helper()
	ctx := context.Background()
	var st *store.Store
	var pool *pgxpool.Pool
	switch backend {
	case "sqlite":
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "bota.db"))
		if err != nil {
			t.Fatalf("open sqlite: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		st = s
	case "postgres":
		s, p, err := postgres.Open(ctx, testenv.PostgresURL(t))
		if err != nil {
			t.Fatalf("open postgres: %v", err)
		}
		t.Cleanup(func() {
			s.Close()
			p.Close()
		})
		st, pool = s, p
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}

	box, err := webhook.NewSecretBox([]byte("test server secret, 32 bytes long!"))
	if err != nil {
		t.Fatal(err)
	}
	env := &deliveryEnv{
		Backend: backend,
		Store:   st,
		Tenant:  model.Tenant{ProjectID: ids.New(ids.Project), Mode: "test"},
	}
	env.Service = &webhook.Service{
		Store:  st,
		Box:    box,
		Client: webhook.NewClient(webhook.GuardConfig{AllowPrivate: true, Timeout: 5 * time.Second}),
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if workers == 0 {
		env.Clock = newFakeClock()
		st.Now = env.Clock.Now
		env.Service.Now = env.Clock.Now
	}
	env.Worker = &webhook.Worker{Service: env.Service}

	riverWorkers := river.NewWorkers()
	river.AddWorker(riverWorkers, env.Worker)
	qcfg := jobs.Config{
		Workers:           riverWorkers,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		FetchPollInterval: 50 * time.Millisecond,
		Test:              true,
	}
	if workers > 0 {
		qcfg.Queues = map[string]int{webhook.QueueName: workers}
		qcfg.JobTimeout = 2 * time.Minute
		qcfg.RescueStuckJobsAfter = 3 * time.Minute
	}
	if pool != nil {
		qcfg.Pool = pool
	} else {
		qcfg.SQLite = st.DB()
	}
	q, err := jobs.Open(ctx, qcfg)
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	if err := q.Migrate(ctx); err != nil {
		t.Fatalf("migrate queue: %v", err)
	}
	env.Queue = q
	env.Service.Queue = q
	if workers > 0 {
		if err := q.Start(ctx); err != nil {
			t.Fatalf("start queue: %v", err)
		}
		t.Cleanup(func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := q.Stop(stopCtx); err != nil {
				t.Errorf("stop queue: %v", err)
			}
		})
	}
	return env
}

// addEndpoint stores an enabled endpoint for url subscribed to events and
// returns it with its plain secret.
func (e *deliveryEnv) addEndpoint(t *testing.T, url string, events ...string) (*store.WebhookEndpoint, string) {
	t.Helper()
	if len(events) == 0 {
		events = []string{webhook.AllEvents}
	}
	ep := &store.WebhookEndpoint{ID: ids.New(ids.Webhook), Tenant: e.Tenant, URL: url,
		Events: events, Metadata: map[string]any{}}
	secret := webhook.NewSecret()
	sealed, err := e.Service.Box.Seal(ep.ID, secret)
	if err != nil {
		t.Fatal(err)
	}
	ep.Secret = sealed
	if err := e.Store.CreateWebhookEndpoint(context.Background(), ep); err != nil {
		t.Fatalf("create endpoint: %v", err)
	}
	return ep, secret
}

// addEvent stores an event and fans it out.
func (e *deliveryEnv) addEvent(t *testing.T, typ string, data any) *store.Event {
	t.Helper()
	ctx := context.Background()
	ev, err := e.Store.AddEvent(ctx, e.Tenant, typ, data)
	if err != nil {
		t.Fatalf("add event: %v", err)
	}
	if err := e.Service.Fanout(ctx, ev); err != nil {
		t.Fatalf("fan out %s: %v", ev.ID, err)
	}
	return ev
}

// onlyDelivery returns the one delivery of the endpoint, with attempts.
func (e *deliveryEnv) onlyDelivery(t *testing.T, endpointID string) *store.WebhookDelivery {
	t.Helper()
	ds, _, err := e.Store.WebhookDeliveries(context.Background(), e.Tenant, endpointID, nil,
		store.Page{Limit: 100})
	if err != nil {
		t.Fatalf("list deliveries: %v", err)
	}
	if len(ds) != 1 {
		t.Fatalf("endpoint %s has %d deliveries, want 1", endpointID, len(ds))
	}
	return ds[0]
}

// captured is one request a receiver got.
type captured struct {
	Header http.Header
	Body   []byte
}

// receiver is an httptest server on 127.0.0.1 that records every request
// and responds with the status that status returns for the request's
// 1-based number.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []captured
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	t.Helper()
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("receiver: read body: %v", err)
		}
		r.mu.Lock()
		r.reqs = append(r.reqs, captured{Header: req.Header.Clone(), Body: body})
		n := len(r.reqs)
		r.mu.Unlock()
		w.WriteHeader(status(n))
		_, _ = io.WriteString(w, "received")
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []captured {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]captured(nil), r.reqs...)
}
