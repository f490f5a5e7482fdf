package api_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/apitest"
	"github.com/botaserver/bota/internal/jobs"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/store/postgres"
	"github.com/botaserver/bota/internal/testenv"
	"github.com/botaserver/bota/internal/webhook"
	"github.com/botaserver/bota/webhooksig"
)

var (
	webhookEndpointPattern = apitest.IDPattern("we")
	deliveryPattern        = apitest.IDPattern("whd")
	eventPattern           = apitest.IDPattern("evt")
	webhookEndpointKeys    = []string{"id", "object", "project_id", "url", "events", "description",
		"status", "metadata", "created_at", "updated_at", "disabled_reason",
		"previous_secret_expires_at"}
)

// fakeResolver answers fixed DNS records, so names can point at blocked
// addresses without a DNS server. Other names (localhost) go to the
// system resolver.
type fakeResolver map[string][]string

func (f fakeResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, ok := f[host]
	if !ok {
		return net.DefaultResolver.LookupIPAddr(ctx, host)
	}
	out := make([]net.IPAddr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, net.IPAddr{IP: net.ParseIP(a)})
	}
	return out, nil
}

var testResolver = fakeResolver{
	"loopback.test":  {"127.0.0.1"},
	"private.test":   {"93.184.216.34", "10.0.0.1"},
	"metadata.test":  {"169.254.169.254"},
	"loopback6.test": {"::1"},
	"public.test":    {"93.184.216.34"},
}

// webhookEnv is an API server whose webhook service delivers through a
// running job queue.
type webhookEnv struct {
	*apitest.Env
	Service *webhook.Service
}

// newWebhookEnv starts a server on backend b. allowPrivate is the
// operator's --webhook-allow-private for URL checks; deliveries may always
// reach the test's loopback receivers.
func newWebhookEnv(t *testing.T, b apitest.Backend, allowPrivate bool) *webhookEnv {
	t.Helper()
	svc := &webhook.Service{
		Client: webhook.NewClient(webhook.GuardConfig{AllowPrivate: true, Timeout: 5 * time.Second}),
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	var pool *pgxpool.Pool
	env := apitest.New(t, capturePool(b, &pool), apitest.WithConfig(func(c *api.Config) {
		c.Webhooks = svc
		c.WebhookGuard = webhook.GuardConfig{AllowPrivate: allowPrivate, Resolver: testResolver}
	}))
	box, err := webhook.NewSecretBox(env.Config.Secret)
	if err != nil {
		t.Fatal(err)
	}
	svc.Store, svc.Box = env.Store, box

	workers := river.NewWorkers()
	river.AddWorker(workers, &webhook.Worker{Service: svc})
	qcfg := jobs.Config{
		Workers:              workers,
		Queues:               map[string]int{webhook.QueueName: 4},
		Logger:               slog.New(slog.NewTextHandler(io.Discard, nil)),
		JobTimeout:           time.Minute,
		RescueStuckJobsAfter: 5 * time.Minute,
		FetchPollInterval:    50 * time.Millisecond,
		Test:                 true,
	}
	if pool != nil {
		qcfg.Pool = pool
	} else {
		qcfg.SQLite = env.Store.DB()
	}
	ctx := context.Background()
	q, err := jobs.Open(ctx, qcfg)
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	if err := q.Migrate(ctx); err != nil {
		t.Fatalf("migrate queue: %v", err)
	}
	svc.Queue = q
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
	return &webhookEnv{Env: env, Service: svc}
}

// capturePool returns b, changed on PostgreSQL to also keep the store's
// pgx pool in *pool for the job queue.
func capturePool(b apitest.Backend, pool **pgxpool.Pool) apitest.Backend {
	if b.Name != "postgres" {
		return b
	}
	return apitest.Backend{Name: b.Name, Open: func(t testing.TB) *store.Store {
		t.Helper()
		st, p, err := postgres.Open(context.Background(), testenv.PostgresURL(t))
		if err != nil {
			t.Fatalf("open postgres: %v", err)
		}
		t.Cleanup(func() {
			st.Close()
			p.Close()
		})
		*pool = p
		return st
	}}
}

// eachWebhookEnv runs fn as a parallel subtest per back end.
func eachWebhookEnv(t *testing.T, allowPrivate bool, fn func(t *testing.T, env *webhookEnv)) {
	t.Helper()
	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		fn(t, newWebhookEnv(t, b, allowPrivate))
	})
}

// hookReceiver records deliveries on 127.0.0.1.
type hookReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []hookRequest
}

type hookRequest struct {
	header http.Header
	body   []byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	h := &hookReceiver{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: %v", err)
		}
		h.mu.Lock()
		h.reqs = append(h.reqs, hookRequest{r.Header.Clone(), body})
		h.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(h.Close)
	return h
}

// waitFor returns the receiver's n-th request (1-based), waiting up to 20 s.
func (h *hookReceiver) waitFor(t *testing.T, n int) hookRequest {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		if len(h.reqs) >= n {
			r := h.reqs[n-1]
			h.mu.Unlock()
			return r
		}
		h.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("receiver got fewer than %d requests in 20 s", n)
	return hookRequest{}
}

func (env *webhookEnv) createEndpoint(t *testing.T, url string) (id, secret string) {
	t.Helper()
	r := env.For(t).Do("POST", "/v1/webhook-endpoints", env.TestKey,
		map[string]any{"url": url, "events": []string{"*"}})
	env.For(t).ExpectStatus(r, http.StatusCreated)
	return r.String("id"), r.String("secret")
}

func checkWebhookEndpoint(t *testing.T, env *webhookEnv, ep map[string]any, withSecret bool) {
	t.Helper()
	requireKeys(t, "webhook endpoint", ep, webhookEndpointKeys)
	if !webhookEndpointPattern.MatchString(str(ep, "id")) {
		t.Errorf("endpoint id %q, want %s", ep["id"], webhookEndpointPattern)
	}
	if ep["object"] != "webhook_endpoint" || ep["project_id"] != env.Project.ID {
		t.Errorf("endpoint object %v, project_id %v", ep["object"], ep["project_id"])
	}
	checkObject(t, "endpoint metadata", ep["metadata"])
	checkTime(t, "endpoint created_at", ep["created_at"], false)
	checkTime(t, "endpoint updated_at", ep["updated_at"], false)
	secret, has := ep["secret"]
	if withSecret {
		if s, _ := secret.(string); !strings.HasPrefix(s, "whsec_") || len(s) < 40 {
			t.Errorf("endpoint secret %v, want a whsec_ secret", secret)
		}
	} else if has {
		t.Errorf("endpoint carries its secret outside create and rotate: %v", secret)
	}
}

func TestWebhookEndpointLifecycle(t *testing.T) {
	eachWebhookEnv(t, false, func(t *testing.T, env *webhookEnv) {
		e := env.For(t)
		for _, base := range []string{"/v1/webhook-endpoints", "/v1/webhooks"} {
			r := e.Do("POST", base, env.TestKey, map[string]any{
				"url": "https://public.test/hook", "events": []string{"recording.created",
					"recording.created", "transcription.completed"},
				"description": "main receiver", "metadata": map[string]any{"team": "a"},
			})
			e.ExpectStatus(r, http.StatusCreated)
			checkWebhookEndpoint(t, env, r.Body, true)
			id := r.String("id")
			if got := r.Body["events"].([]any); len(got) != 2 {
				t.Errorf("events %v, want the two distinct types", got)
			}
			if r.Body["status"] != "enabled" || r.Body["disabled_reason"] != nil {
				t.Errorf("new endpoint status %v, reason %v", r.Body["status"], r.Body["disabled_reason"])
			}

			g := e.Do("GET", base+"/"+id, env.TestKey, nil)
			e.ExpectStatus(g, http.StatusOK)
			checkWebhookEndpoint(t, env, g.Body, false)
			other := "/v1/webhooks/" + id
			if base == "/v1/webhooks" {
				other = "/v1/webhook-endpoints/" + id
			}
			e.ExpectStatus(e.Do("GET", other, env.TestKey, nil), http.StatusOK)

			u := e.Do("PATCH", base+"/"+id, env.TestKey, map[string]any{
				"status": "disabled", "description": nil, "events": []string{"*"}})
			e.ExpectStatus(u, http.StatusOK)
			if u.Body["status"] != "disabled" || u.Body["description"] != nil ||
				u.Body["disabled_reason"] == nil {
				t.Errorf("after update: status %v, description %v, reason %v",
					u.Body["status"], u.Body["description"], u.Body["disabled_reason"])
			}
			u = e.Do("PATCH", base+"/"+id, env.TestKey, map[string]any{"status": "enabled"})
			if u.Body["status"] != "enabled" || u.Body["disabled_reason"] != nil {
				t.Errorf("after enable: status %v, reason %v", u.Body["status"], u.Body["disabled_reason"])
			}

			l := e.Do("GET", base+"?limit=1", env.TestKey, nil)
			e.ExpectStatus(l, http.StatusOK)
			if len(l.Data()) != 1 || l.Data()[0]["id"] != id {
				t.Errorf("list first item %v, want %s", l.Data(), id)
			}
			checkWebhookEndpoint(t, env, l.Data()[0], false)

			e.ExpectStatus(e.Do("DELETE", base+"/"+id, env.TestKey, nil), http.StatusNoContent)
			e.ExpectError(e.Do("GET", base+"/"+id, env.TestKey, nil), 404, "not_found", "id")
		}
		l := e.Do("GET", "/v1/webhook-endpoints?offset=0", env.TestKey, nil)
		if len(l.Data()) != 0 || l.Body["has_more"] != false {
			t.Errorf("list after deleting every endpoint: %s", l.Raw)
		}
	})
}

func TestWebhookURLRejected(t *testing.T) {
	eachWebhookEnv(t, false, func(t *testing.T, env *webhookEnv) {
		e := env.For(t)
		blocked := []string{
			"http://127.0.0.1/hook",
			"http://10.0.0.1/hook",
			"http://169.254.169.254/latest/meta-data/",
			"http://[::1]:8080/hook",
			"http://localhost/hook",
			"https://loopback.test/hook",
			"https://private.test/hook",
			"https://metadata.test/hook",
			"https://loopback6.test/hook",
		}
		malformed := []string{"ftp://public.test/hook", "public.test/hook", "", "https://u:p@public.test/",
			"http://2130706433/"}
		for _, url := range append(blocked, malformed...) {
			r := e.Do("POST", "/v1/webhook-endpoints", env.TestKey,
				map[string]any{"url": url, "events": []string{"*"}})
			e.ExpectError(r, 400, "invalid_request", "url")
		}
		for _, url := range blocked[:4] {
			msg, _ := e.Do("POST", "/v1/webhooks", env.TestKey, map[string]any{"url": url,
				"events": []string{"*"}}).Error()["message"].(string)
			if !strings.Contains(msg, "BOTA_WEBHOOK_ALLOW_PRIVATE") {
				t.Errorf("%s: message %q does not say how to allow private addresses", url, msg)
			}
		}

		id, _ := env.createEndpoint(t, "https://public.test/hook")
		for _, url := range blocked {
			r := e.Do("PATCH", "/v1/webhook-endpoints/"+id, env.TestKey, map[string]any{"url": url})
			e.ExpectError(r, 400, "invalid_request", "url")
		}
	})
}

func TestWebhookURLAllowPrivate(t *testing.T) {
	eachWebhookEnv(t, true, func(t *testing.T, env *webhookEnv) {
		e := env.For(t)
		for _, url := range []string{"http://127.0.0.1/hook", "http://10.0.0.1/hook",
			"http://169.254.169.254/", "http://[::1]:8080/hook", "https://private.test/hook"} {
			r := e.Do("POST", "/v1/webhook-endpoints", env.TestKey,
				map[string]any{"url": url, "events": []string{"*"}})
			e.ExpectStatus(r, http.StatusCreated)
		}
		r := e.Do("POST", "/v1/webhook-endpoints", env.TestKey,
			map[string]any{"url": "gopher://127.0.0.1/", "events": []string{"*"}})
		e.ExpectError(r, 400, "invalid_request", "url")
	})
}

func TestWebhookBodyValidation(t *testing.T) {
	eachWebhookEnv(t, false, func(t *testing.T, env *webhookEnv) {
		e := env.For(t)
		cases := []struct {
			body  string
			param string
		}{
			{`{"events":["*"]}`, "url"},
			{`{"url":"https://public.test/"}`, "events"},
			{`{"url":"https://public.test/","events":[]}`, "events"},
			{`{"url":"https://public.test/","events":["recording.exploded"]}`, "events"},
			{`{"url":"https://public.test/","events":"recording.created"}`, "events"},
			{`{"url":"https://public.test/","events":["*"],"metadata":"x"}`, "metadata"},
			{`{"url":"https://public.test/","events":["*"],"status":"paused"}`, "status"},
			{`{"url":"https://public.test/","events":["*"],"description":"` +
				strings.Repeat("d", 501) + `"}`, "description"},
		}
		for _, c := range cases {
			r := e.Do("POST", "/v1/webhook-endpoints", env.TestKey, c.body)
			e.ExpectError(r, 400, "invalid_request", c.param)
		}

		id, _ := env.createEndpoint(t, "https://public.test/hook")
		for _, body := range []string{`{"expire_old_after_seconds":604801}`,
			`{"expire_old_after_seconds":-1}`, `{"expire_old_after_seconds":"60"}`} {
			r := e.Do("POST", "/v1/webhook-endpoints/"+id+"/rotate-secret", env.TestKey, body)
			e.ExpectError(r, 400, "invalid_request", "expire_old_after_seconds")
		}
		r := e.Do("GET", "/v1/webhook-endpoints/"+id+"/deliveries?status=lost", env.TestKey, nil)
		e.ExpectError(r, 400, "invalid_request", "status")
		r = e.Do("GET", "/v1/events?type=recording.exploded", env.TestKey, nil)
		e.ExpectError(r, 400, "invalid_request", "type")
		r = e.Do("GET", "/v1/webhook-endpoints?cursor=made-up", env.TestKey, nil)
		e.ExpectError(r, 400, "invalid_request", "cursor")
	})
}

// webhookRoutes are the webhook routes with the scope each needs and its
// success status with a secret key.
var webhookRoutes = []struct {
	method, path, body, scope string
}{
	{"POST", "/v1/webhook-endpoints", `{"url":"https://public.test/","events":["*"]}`, "webhooks:write"},
	{"GET", "/v1/webhook-endpoints", "", "webhooks:read"},
	{"GET", "/v1/webhook-endpoints/{we}", "", "webhooks:read"},
	{"PATCH", "/v1/webhook-endpoints/{we}", `{"description":"x"}`, "webhooks:write"},
	{"POST", "/v1/webhook-endpoints/{we}/rotate-secret", `{}`, "webhooks:write"},
	{"POST", "/v1/webhook-endpoints/{we}/test", "", "webhooks:write"},
	{"GET", "/v1/webhook-endpoints/{we}/deliveries", "", "webhooks:read"},
	{"POST", "/v1/webhook-endpoints/{we}/deliveries/{whd}/retry", "", "webhooks:write"},
	{"DELETE", "/v1/webhook-endpoints/{we}", "", "webhooks:write"},
	{"POST", "/v1/webhooks", `{"url":"https://public.test/","events":["*"]}`, "webhooks:write"},
	{"GET", "/v1/webhooks/{we}", "", "webhooks:read"},
	{"DELETE", "/v1/webhooks/{we}", "", "webhooks:write"},
	{"GET", "/v1/events", "", "webhooks:read"},
	{"GET", "/v1/events/{evt}", "", "webhooks:read"},
}

func TestWebhookAuthMatrix(t *testing.T) {
	eachWebhookEnv(t, true, func(t *testing.T, env *webhookEnv) {
		e := env.For(t)
		rcv := newHookReceiver(t)
		weID, _ := env.createEndpoint(t, rcv.URL)
		d := e.Do("POST", "/v1/webhook-endpoints/"+weID+"/test", env.TestKey, nil)
		e.ExpectStatus(d, http.StatusAccepted)
		rcv.waitFor(t, 1)
		fill := func(p string) string {
			return strings.NewReplacer("{we}", weID, "{whd}", d.String("id"),
				"{evt}", str(d.Body, "event_id")).Replace(p)
		}

		device := env.NewBoundDevice()
		readKey := env.NewKey("test", "webhooks:read")
		otherKey := env.NewKey("test", "recordings:read", "recordings:write")
		other := env.OtherProject()
		for _, rt := range webhookRoutes {
			path := fill(rt.path)
			name := rt.method + " " + rt.path
			var body any
			if rt.body != "" {
				body = rt.body
			}
			e.ExpectError(e.Do(rt.method, path, "", body), 401, "unauthorized", "")
			e.ExpectError(e.Do(rt.method, path, "sk_test_not-a-key", body), 401, "unauthorized", "")
			e.ExpectError(e.Do(rt.method, path, device.Token, body), 403, "forbidden", "")
			r := e.Do(rt.method, path, otherKey.Secret, body)
			e.ExpectError(r, 403, "insufficient_scope", "")
			if !strings.Contains(r.Error()["message"].(string), rt.scope) {
				t.Errorf("%s: scope message %q does not name %s", name, r.Error()["message"], rt.scope)
			}
			r = e.Do(rt.method, path, readKey.Secret, body)
			if rt.scope == "webhooks:write" {
				e.ExpectError(r, 403, "insufficient_scope", "")
			} else if r.Status != http.StatusOK {
				t.Errorf("%s with webhooks:read: status %d, body %s", name, r.Status, r.Raw)
			}
			if strings.Contains(rt.path, "{") {
				for _, key := range []string{other.TestKey, env.LiveKey} {
					e.ExpectError(e.Do(rt.method, path, key, body), 404, "not_found", apitest.AnyParam)
				}
			}
		}
		for _, key := range []string{other.TestKey, env.LiveKey} {
			for _, path := range []string{"/v1/webhook-endpoints", "/v1/events"} {
				if r := e.Do("GET", path, key, nil); r.Status != 200 || len(r.Data()) != 0 {
					t.Errorf("GET %s from another tenant: status %d, %d items", path, r.Status, len(r.Data()))
				}
			}
		}
	})
}

func TestWebhookRotateSecret(t *testing.T) {
	eachWebhookEnv(t, true, func(t *testing.T, env *webhookEnv) {
		e := env.For(t)
		rcv := newHookReceiver(t)
		id, first := env.createEndpoint(t, rcv.URL)
		sent := 0
		deliver := func() hookRequest {
			t.Helper()
			e.ExpectStatus(e.Do("POST", "/v1/webhooks/"+id+"/test", env.TestKey, nil), http.StatusAccepted)
			sent++
			return rcv.waitFor(t, sent)
		}
		verify := func(secret string, r hookRequest) error {
			return webhooksig.Verify(secret, r.header, r.body, time.Now(), 0)
		}

		r := e.Do("POST", "/v1/webhook-endpoints/"+id+"/rotate-secret", env.TestKey, nil)
		e.ExpectStatus(r, http.StatusOK)
		checkWebhookEndpoint(t, env, r.Body, true)
		second := r.String("secret")
		if second == first || r.Body["previous_secret_expires_at"] != nil {
			t.Errorf("rotation without overlap: secret changed %v, previous expiry %v",
				second != first, r.Body["previous_secret_expires_at"])
		}
		got := deliver()
		if n := strings.Count(got.header.Get(webhooksig.SignatureHeader), "v1="); n != 1 {
			t.Errorf("without overlap: %d signatures, want exactly 1", n)
		}
		if err := verify(second, got); err != nil {
			t.Errorf("without overlap: new secret does not verify: %v", err)
		}
		if err := verify(first, got); err == nil {
			t.Error("without overlap: the old secret still verifies")
		}

		r = e.Do("POST", "/v1/webhook-endpoints/"+id+"/rotate-secret", env.TestKey,
			map[string]any{"expire_old_after_seconds": 3600})
		e.ExpectStatus(r, http.StatusOK)
		third := r.String("secret")
		checkTime(t, "previous_secret_expires_at", r.Body["previous_secret_expires_at"], false)
		got = deliver()
		entries := strings.Fields(got.header.Get(webhooksig.SignatureHeader))
		if len(entries) != 2 {
			t.Fatalf("with overlap: signatures %q, want 2", entries)
		}
		for _, secret := range []string{third, second} {
			if err := verify(secret, got); err != nil {
				t.Errorf("with overlap: secret %s... does not verify: %v", secret[:12], err)
			}
		}
		newFirst := got.header.Clone()
		newFirst.Set(webhooksig.SignatureHeader, entries[0])
		if err := webhooksig.Verify(third, newFirst, got.body, time.Now(), 0); err != nil {
			t.Errorf("with overlap: the first signature is not the new secret's: %v", err)
		}
	})
}

func TestWebhookCreateReplayReissues(t *testing.T) {
	eachWebhookEnv(t, true, func(t *testing.T, env *webhookEnv) {
		e := env.For(t)
		rcv := newHookReceiver(t)
		body := map[string]any{"url": rcv.URL, "events": []string{"*"}}
		first := e.Do("POST", "/v1/webhook-endpoints", env.TestKey, body, "Idempotency-Key", "create-1")
		e.ExpectStatus(first, http.StatusCreated)
		replay := e.Do("POST", "/v1/webhook-endpoints", env.TestKey, body, "Idempotency-Key", "create-1")
		e.ExpectStatus(replay, http.StatusCreated)
		if replay.Header.Get("Idempotent-Replayed") != "true" || replay.String("id") != first.String("id") {
			t.Fatalf("replay: header %q, id %s; want true, %s",
				replay.Header.Get("Idempotent-Replayed"), replay.String("id"), first.String("id"))
		}
		if s := replay.String("secret"); !strings.HasPrefix(s, "whsec_") || s == first.String("secret") {
			t.Fatalf("replayed secret %q, want a new whsec_ secret", s)
		}

		id := first.String("id")
		e.ExpectStatus(e.Do("POST", "/v1/webhooks/"+id+"/test", env.TestKey, nil), http.StatusAccepted)
		got := rcv.waitFor(t, 1)
		if err := webhooksig.Verify(replay.String("secret"), got.header, got.body, time.Now(), 0); err != nil {
			t.Errorf("replayed secret does not verify: %v", err)
		}
		if err := webhooksig.Verify(first.String("secret"), got.header, got.body, time.Now(), 0); err == nil {
			t.Error("the secret of the lost response still verifies")
		}
		l := e.Do("GET", "/v1/webhook-endpoints", env.TestKey, nil)
		if len(l.Data()) != 1 {
			t.Errorf("replay created %d endpoints, want 1", len(l.Data()))
		}
	})
}

func TestWebhookTestAndRetry(t *testing.T) {
	eachWebhookEnv(t, true, func(t *testing.T, env *webhookEnv) {
		e := env.For(t)
		rcv := newHookReceiver(t)
		id, secret := env.createEndpoint(t, rcv.URL)
		other, _ := env.createEndpoint(t, rcv.URL+"/other")

		r := e.Do("POST", "/v1/webhook-endpoints/"+id+"/test", env.TestKey, nil)
		e.ExpectStatus(r, http.StatusAccepted)
		if !deliveryPattern.MatchString(r.String("id")) || r.Body["status"] != "pending" ||
			r.Body["event_type"] != "webhook.test" || !eventPattern.MatchString(str(r.Body, "event_id")) {
			t.Errorf("test delivery: %s", r.Raw)
		}
		got := rcv.waitFor(t, 1)
		if err := webhooksig.Verify(secret, got.header, got.body, time.Now(), 0); err != nil {
			t.Errorf("test event does not verify: %v", err)
		}
		if !strings.Contains(string(got.body), `"type":"webhook.test"`) ||
			got.header.Get(webhooksig.EventIDHeader) != r.Body["event_id"] {
			t.Errorf("test event body %s", got.body)
		}

		deliveryID := r.String("id")
		list := waitDelivery(t, env, id, deliveryID, 1)
		a := list["attempts"].([]any)[0].(map[string]any)
		if a["status_code"] != float64(200) || a["error"] != nil || a["response_body"] != "ok" {
			t.Errorf("attempt %v", a)
		}
		checkTime(t, "attempted_at", a["attempted_at"], false)
		if _, ok := a["duration_ms"].(float64); !ok {
			t.Errorf("duration_ms = %v", a["duration_ms"])
		}

		r = e.Do("POST", "/v1/webhook-endpoints/"+id+"/deliveries/"+deliveryID+"/retry", env.TestKey, nil)
		e.ExpectStatus(r, http.StatusAccepted)
		second := rcv.waitFor(t, 2)
		if second.header.Get(webhooksig.EventIDHeader) != got.header.Get(webhooksig.EventIDHeader) {
			t.Error("retry sent another event id")
		}
		waitDelivery(t, env, id, deliveryID, 2)

		e.ExpectError(e.Do("POST", "/v1/webhook-endpoints/"+other+"/deliveries/"+deliveryID+"/retry",
			env.TestKey, nil), 404, "not_found", "delivery_id")
		if l := e.Do("GET", "/v1/webhook-endpoints/"+other+"/deliveries", env.TestKey, nil); len(l.Data()) != 0 {
			t.Errorf("the other endpoint has %d deliveries of a test event", len(l.Data()))
		}
		e.ExpectStatus(e.Do("PATCH", "/v1/webhooks/"+id, env.TestKey, map[string]any{"status": "disabled"}),
			http.StatusOK)
		e.ExpectError(e.Do("POST", "/v1/webhooks/"+id+"/test", env.TestKey, nil), 409, "conflict", "id")
		e.ExpectError(e.Do("POST", "/v1/webhooks/"+id+"/deliveries/"+deliveryID+"/retry", env.TestKey, nil),
			409, "conflict", "id")
	})
}

// waitDelivery waits until the delivery has attempts attempts and is
// succeeded, and returns it as the deliveries list shows it.
func waitDelivery(t *testing.T, env *webhookEnv, endpointID, deliveryID string, attempts int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last map[string]any
	for time.Now().Before(deadline) {
		l := env.For(t).Do("GET", "/v1/webhook-endpoints/"+endpointID+"/deliveries", env.TestKey, nil)
		for _, d := range l.Data() {
			if d["id"] == deliveryID {
				last = d
			}
		}
		if last != nil && last["status"] == "succeeded" && len(last["attempts"].([]any)) == attempts {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("delivery %s did not reach %d attempts: %v", deliveryID, attempts, last)
	return nil
}

func TestEventsAPI(t *testing.T) {
	eachWebhookEnv(t, false, func(t *testing.T, env *webhookEnv) {
		e := env.For(t)
		u := env.CreateEndUser(nil)
		e.ExpectStatus(e.Do("DELETE", "/v1/end-users/"+str(u, "id"), env.TestKey, nil), http.StatusNoContent)

		l := e.Do("GET", "/v1/events?type=end_user.deleted", env.TestKey, nil)
		e.ExpectStatus(l, http.StatusOK)
		if len(l.Data()) != 1 {
			t.Fatalf("events: %s", l.Raw)
		}
		ev := l.Data()[0]
		requireKeys(t, "event", ev, []string{"id", "object", "type", "created_at", "data", "project_id"})
		if !eventPattern.MatchString(str(ev, "id")) || ev["object"] != "event" ||
			ev["project_id"] != env.Project.ID || ev["type"] != "end_user.deleted" {
			t.Errorf("event %v", ev)
		}
		checkTime(t, "event created_at", ev["created_at"], false)
		if data, _ := ev["data"].(map[string]any); data["id"] != u["id"] {
			t.Errorf("event data %v, want the end user %s", ev["data"], u["id"])
		}

		g := e.Do("GET", "/v1/events/"+str(ev, "id"), env.TestKey, nil)
		e.ExpectStatus(g, http.StatusOK)
		if !reflect.DeepEqual(g.Body, ev) {
			t.Errorf("GET event %s differs from its list entry %v", g.Raw, ev)
		}
		e.ExpectError(e.Do("GET", "/v1/events/evt_missing", env.TestKey, nil), 404, "not_found", "id")
		e.ExpectError(e.Do("GET", "/v1/events/../x", env.TestKey, nil), 404, "not_found", apitest.AnyParam)

		env.Clock.Advance(31 * 24 * time.Hour)
		e.ExpectError(e.Do("GET", "/v1/events/"+str(ev, "id"), env.TestKey, nil), 404, "not_found", "id")
		if l := e.Do("GET", "/v1/events", env.TestKey, nil); len(l.Data()) != 0 {
			t.Errorf("events older than 30 days listed: %s", l.Raw)
		}
	})
}
