// Package apitest runs the API server in-process for black-box HTTP tests,
// on SQLite and on a real PostgreSQL.
//
// A test runs the same cases on every back end:
//
//	for _, b := range apitest.Backends(t) {
//		t.Run(b.Name, func(t *testing.T) {
//			env := apitest.New(t, b)
//			r := env.Do("GET", "/v1/devices", env.TestKey, nil)
//			...
//		})
//	}
//
// A package that uses the PostgreSQL back end stops the cluster in
// TestMain with testenv.StopAll.
package apitest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/blob/disk"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/store/postgres"
	"github.com/botaserver/bota/internal/store/sqlite"
	"github.com/botaserver/bota/internal/testenv"
)

// Backend is a database the server can run on.
type Backend struct {
	// Name is "sqlite" or "postgres"; tests use it as the subtest name.
	Name string
	// Open returns a new, empty, unmigrated store that t's cleanup closes.
	Open func(t testing.TB) *store.Store
}

// Backends returns SQLite (a file in a temporary folder) and PostgreSQL (a
// new database on the testenv cluster for each Open).
func Backends(t testing.TB) []Backend {
	t.Helper()
	return []Backend{SQLite(), Postgres()}
}

// SQLite returns the SQLite back end.
func SQLite() Backend {
	return Backend{Name: "sqlite", Open: func(t testing.TB) *store.Store {
		t.Helper()
		st, err := sqlite.Open(filepath.Join(t.TempDir(), "bota.db"))
		if err != nil {
			t.Fatalf("apitest: open sqlite: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}}
}

// Postgres returns the PostgreSQL back end.
func Postgres() Backend {
	return Backend{Name: "postgres", Open: func(t testing.TB) *store.Store {
		t.Helper()
		url := testenv.PostgresURL(t)
		st, pool, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatalf("apitest: open postgres: %v", err)
		}
		// Registered after PostgresURL's cleanup, so it runs before the
		// database is dropped.
		t.Cleanup(func() {
			st.Close()
			pool.Close()
		})
		return st
	}}
}

// AdminToken is the admin token of every Env.
const AdminToken = "admin-token-for-tests-0123456789abcdef"

// Env is a running server with one project and its two secret keys.
type Env struct {
	t testing.TB

	// Backend is the database's name ("sqlite" or "postgres").
	Backend string
	// Store is the server's store; Store.Now is Clock.Now.
	Store *store.Store
	// Clock drives Store.Now, so tests move time without sleeping.
	Clock *Clock
	// Server is the API server; HTTP serves its Handler.
	Server *api.Server
	// HTTP is the test server; URL is its base URL.
	HTTP *httptest.Server
	URL  string
	// Blobs is the local blob store mounted at /uploads/.
	Blobs *disk.Store
	// Config is the configuration the server was built with.
	Config api.Config

	// Project is the project the keys below belong to.
	Project *model.Project
	// TestKey and LiveKey are the project's secret keys (sk_test_, sk_live_).
	TestKey, LiveKey string
	// TestKeyID and LiveKeyID are their key_ ids.
	TestKeyID, LiveKeyID string

	// Allow5xx turns off the check that fails the test on any 5xx response.
	Allow5xx bool

	logs *syncBuffer
	seq  *counter
}

// Option changes how New builds the server.
type Option func(*options)

type options struct {
	cfg      api.Config
	logLevel slog.Level
}

// WithConfig lets fn change the api.Config before the server is built.
func WithConfig(fn func(*api.Config)) Option {
	return func(o *options) { fn(&o.cfg) }
}

// WithRateLimit sets the per-project and per-device rates (requests per
// second); 0 turns every limit off, which is the default of New.
func WithRateLimit(project, device float64) Option {
	return func(o *options) {
		o.cfg.RateLimit = project
		o.cfg.DeviceRateLimit = device
	}
}

// WithLogLevel sets the level of the server's log, which New otherwise
// keeps at debug for tests to read.
func WithLogLevel(level slog.Level) Option {
	return func(o *options) { o.logLevel = level }
}

// New migrates a fresh database of backend b, creates a project with a
// test and a live key, and starts the server on an httptest server. The
// admin API is on, with AdminToken; rate limits are off.
func New(t testing.TB, b Backend, opts ...Option) *Env {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatalf("apitest: random secret: %v", err)
	}
	o := options{cfg: api.Config{AdminToken: AdminToken, Secret: secret}, logLevel: slog.LevelDebug}
	for _, opt := range opts {
		opt(&o)
	}

	st := b.Open(t)
	clock := &Clock{}
	st.Now = clock.Now
	ctx := context.Background()
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("apitest: migrate %s: %v", b.Name, err)
	}
	project, keys, secrets, err := api.CreateProjectWithKeys(ctx, st, "apitest")
	if err != nil {
		t.Fatalf("apitest: create project: %v", err)
	}

	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: o.logLevel}))

	// The blob store needs the server's URL and the server needs the blob
	// store, so the handler is filled in once both exist.
	var handler http.Handler
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)

	blobs, err := disk.New(disk.Config{
		Dir:       filepath.Join(t.TempDir(), "media"),
		PublicURL: hs.URL,
		Secret:    secret,
		Logger:    logger,
	})
	if err != nil {
		t.Fatalf("apitest: open blob store: %v", err)
	}
	t.Cleanup(func() { blobs.Close() })

	srv := api.New(o.cfg, st, blobs, logger)
	srv.Mount(disk.UploadsPath, blobs.Handler())
	handler = srv.Handler()

	return &Env{
		t:         t,
		Backend:   b.Name,
		Store:     st,
		Clock:     clock,
		Server:    srv,
		HTTP:      hs,
		URL:       hs.URL,
		Blobs:     blobs,
		Config:    o.cfg,
		Project:   project,
		TestKey:   secrets[0],
		LiveKey:   secrets[1],
		TestKeyID: keys[0].ID,
		LiveKeyID: keys[1].ID,
		logs:      logs,
		seq:       &counter{},
	}
}

// For returns a copy of the Env whose helpers report to t, for use inside
// subtests (a subtest must not fail its parent's t).
func (e *Env) For(t testing.TB) *Env {
	c := *e
	c.t = t
	return &c
}

// T returns the test the Env reports to.
func (e *Env) T() testing.TB { return e.t }

// Logs returns everything the server logged so far.
func (e *Env) Logs() string { return e.logs.String() }

// Unique returns a string no other call on this Env returns, for serial
// numbers and external ids.
func (e *Env) Unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), e.seq.next())
}

// Response is an HTTP response of the server.
type Response struct {
	Status int
	Header http.Header
	// Body is the decoded JSON object, or nil when the body is not one.
	Body map[string]any
	// Raw is the body as sent.
	Raw []byte
}

// Do sends a request with token as the bearer credential ("" sends none).
// body is sent as is when it is a []byte or a string, and as JSON
// otherwise (nil sends no body). headers are name, value pairs. Do fails
// the test on a transport error, on a missing or malformed Request-Id
// header, and on any 5xx response unless Allow5xx is set.
func (e *Env) Do(method, path, token string, body any, headers ...string) *Response {
	e.t.Helper()
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		reader = bytes.NewReader(b)
	case string:
		reader = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("apitest: encode body: %v", err)
		}
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.URL+path, reader)
	if err != nil {
		e.t.Fatalf("apitest: new request %s %s: %v", method, path, err)
	}
	if reader != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if len(headers)%2 != 0 {
		e.t.Fatalf("apitest: headers must be name, value pairs; got %q", headers)
	}
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return e.send(req)
}

// Send sends a prepared request with the checks of Do.
func (e *Env) Send(req *http.Request) *Response {
	e.t.Helper()
	return e.send(req)
}

func (e *Env) send(req *http.Request) *Response {
	e.t.Helper()
	res, err := e.HTTP.Client().Do(req)
	if err != nil {
		e.t.Fatalf("apitest: %s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("apitest: read %s %s: %v", req.Method, req.URL.Path, err)
	}
	r := &Response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(raw) > 0 {
		var obj map[string]any
		if json.Unmarshal(raw, &obj) == nil {
			r.Body = obj
		}
	}
	if id := res.Header.Get("Request-Id"); !RequestIDPattern.MatchString(id) {
		e.t.Errorf("%s %s: Request-Id header %q does not match %s",
			req.Method, req.URL.Path, id, RequestIDPattern)
	}
	if r.Status >= 500 && !e.Allow5xx {
		e.t.Errorf("%s %s: status %d, body %s", req.Method, req.URL.Path, r.Status, raw)
	}
	return r
}

// String returns the body's string field key, or "" when it is absent or
// not a string.
func (r *Response) String(key string) string {
	s, _ := r.Body[key].(string)
	return s
}

// Data returns the objects of a list response's data array.
func (r *Response) Data() []map[string]any {
	arr, _ := r.Body["data"].([]any)
	out := make([]map[string]any, 0, len(arr))
	for _, v := range arr {
		if m, ok := v.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// Error returns the error object of an error response, or nil.
func (r *Response) Error() map[string]any {
	m, _ := r.Body["error"].(map[string]any)
	return m
}

// ErrorCode returns error.code of an error response, or "".
func (r *Response) ErrorCode() string {
	s, _ := r.Error()["code"].(string)
	return s
}

// Patterns of the API's ids and timestamps.
var (
	RequestIDPattern = regexp.MustCompile(`^req_[A-Za-z0-9]{1,64}$`)
	TimestampPattern = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
)

// IDPattern returns the pattern of ids with prefix, as clients check them.
func IDPattern(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `_[A-Za-z0-9]{1,64}$`)
}

// AnyParam makes ExpectError accept any error.param.
const AnyParam = "\x00any"

// ExpectError checks that r is the API's error object with status, code
// and param. An empty param must be null, and AnyParam skips the check.
// The error object must have exactly the keys code, message, param,
// details and request_id, and request_id must equal the Request-Id header.
func (e *Env) ExpectError(r *Response, status int, code, param string) {
	e.t.Helper()
	if r.Status != status {
		e.t.Errorf("status = %d, want %d; body %s", r.Status, status, r.Raw)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if len(r.Body) != 1 {
		e.t.Errorf("error body has keys %v, want only error; body %s", keys(r.Body), r.Raw)
	}
	obj := r.Error()
	if obj == nil {
		e.t.Errorf("body has no error object: %s", r.Raw)
		return
	}
	want := []string{"code", "details", "message", "param", "request_id"}
	if got := keys(obj); strings.Join(got, ",") != strings.Join(want, ",") {
		e.t.Errorf("error keys = %v, want %v", got, want)
	}
	if got := obj["code"]; got != code {
		e.t.Errorf("error.code = %v, want %s; body %s", got, code, r.Raw)
	}
	if msg, _ := obj["message"].(string); msg == "" {
		e.t.Errorf("error.message is empty: %s", r.Raw)
	}
	switch {
	case param == AnyParam:
	case param == "":
		if obj["param"] != nil {
			e.t.Errorf("error.param = %v, want null; body %s", obj["param"], r.Raw)
		}
	default:
		if obj["param"] != param {
			e.t.Errorf("error.param = %v, want %s; body %s", obj["param"], param, r.Raw)
		}
	}
	id, _ := obj["request_id"].(string)
	if !RequestIDPattern.MatchString(id) {
		e.t.Errorf("error.request_id = %q, want a req_ id", id)
	}
	if h := r.Header.Get("Request-Id"); id != h {
		e.t.Errorf("error.request_id = %q, Request-Id header = %q", id, h)
	}
}

// ExpectStatus fails the test now unless r has status.
func (e *Env) ExpectStatus(r *Response, status int) {
	e.t.Helper()
	if r.Status != status {
		e.t.Fatalf("status = %d, want %d; body %s", r.Status, status, r.Raw)
	}
}

// Key is an API key and its secret.
type Key struct {
	ID     string
	Secret string
}

// NewKey stores a new key of the Env's project in mode ("test" or "live").
// Scopes make it a restricted rk_ key; none make it a secret sk_ key.
func (e *Env) NewKey(mode string, scopes ...string) Key {
	e.t.Helper()
	return e.newKey(e.Project.ID, mode, scopes)
}

func (e *Env) newKey(projectID, mode string, scopes []string) Key {
	e.t.Helper()
	k, secret := auth.NewAPIKey(projectID, mode, "apitest key", scopes)
	if err := e.Store.CreateAPIKey(context.Background(), k, ids.Hash(secret)); err != nil {
		e.t.Fatalf("apitest: create key: %v", err)
	}
	return Key{ID: k.ID, Secret: secret}
}

// RevokeKey revokes the key with id.
func (e *Env) RevokeKey(id string) {
	e.t.Helper()
	if _, err := e.Store.RevokeAPIKey(context.Background(), id); err != nil {
		e.t.Fatalf("apitest: revoke key %s: %v", id, err)
	}
}

// NewProject returns a copy of the Env whose Project, keys and key ids are
// those of a new project on the same server.
func (e *Env) NewProject() *Env {
	e.t.Helper()
	p, keys, secrets, err := api.CreateProjectWithKeys(context.Background(), e.Store, "apitest")
	if err != nil {
		e.t.Fatalf("apitest: create project: %v", err)
	}
	c := *e
	c.Project = p
	c.TestKey, c.LiveKey = secrets[0], secrets[1]
	c.TestKeyID, c.LiveKeyID = keys[0].ID, keys[1].ID
	return &c
}

// Project is a second project on the same server.
type Project struct {
	ID               string
	TestKey, LiveKey string
}

// OtherProject creates another project with its two secret keys.
func (e *Env) OtherProject() Project {
	e.t.Helper()
	p, _, secrets, err := api.CreateProjectWithKeys(context.Background(), e.Store, "apitest other")
	if err != nil {
		e.t.Fatalf("apitest: create project: %v", err)
	}
	return Project{ID: p.ID, TestKey: secrets[0], LiveKey: secrets[1]}
}

// CreateEndUser creates an end user with the test key; fields may be nil.
// It returns the end user object.
func (e *Env) CreateEndUser(fields map[string]any) map[string]any {
	e.t.Helper()
	return e.CreateEndUserAs(e.TestKey, fields)
}

// CreateEndUserAs creates an end user with token.
func (e *Env) CreateEndUserAs(token string, fields map[string]any) map[string]any {
	e.t.Helper()
	if fields == nil {
		fields = map[string]any{}
	}
	r := e.Do("POST", "/v1/end-users", token, fields)
	if r.Status != http.StatusCreated {
		e.t.Fatalf("apitest: create end user: status %d, body %s", r.Status, r.Raw)
	}
	return r.Body
}

// RegisterDevice registers a device with a new serial number with the test
// key and returns the device object.
func (e *Env) RegisterDevice() map[string]any {
	e.t.Helper()
	return e.RegisterDeviceAs(e.TestKey, map[string]any{"serial_number": e.Unique("SN")})
}

// RegisterDeviceAs registers a device with token and body.
func (e *Env) RegisterDeviceAs(token string, body map[string]any) map[string]any {
	e.t.Helper()
	r := e.Do("POST", "/v1/devices", token, body)
	if r.Status != http.StatusCreated {
		e.t.Fatalf("apitest: register device: status %d, body %s", r.Status, r.Raw)
	}
	return r.Body
}

// BindDevice binds the device to the end user with the test key and
// returns the new device token.
func (e *Env) BindDevice(deviceID, endUserID string) string {
	e.t.Helper()
	return e.BindDeviceAs(e.TestKey, deviceID, endUserID)
}

// BindDeviceAs binds with token and returns the new device token.
func (e *Env) BindDeviceAs(token, deviceID, endUserID string) string {
	e.t.Helper()
	r := e.Do("POST", "/v1/devices/"+deviceID+"/bind", token, map[string]any{"end_user_id": endUserID})
	if r.Status != http.StatusOK {
		e.t.Fatalf("apitest: bind device: status %d, body %s", r.Status, r.Raw)
	}
	tok := r.String("device_token")
	if !strings.HasPrefix(tok, "dtok_") {
		e.t.Fatalf("apitest: bind device: device_token = %q", tok)
	}
	return tok
}

// BoundDevice is a device bound to an end user, in the test mode.
type BoundDevice struct {
	EndUserID string
	DeviceID  string
	Token     string
}

// NewBoundDevice creates an end user and a device and binds them.
func (e *Env) NewBoundDevice() BoundDevice {
	e.t.Helper()
	u := e.CreateEndUser(nil)
	d := e.RegisterDevice()
	eu, _ := u["id"].(string)
	dev, _ := d["id"].(string)
	return BoundDevice{EndUserID: eu, DeviceID: dev, Token: e.BindDevice(dev, eu)}
}

// Clock is a settable time source for Store.Now. The zero Clock follows
// the real time.
type Clock struct {
	mu     sync.Mutex
	fixed  time.Time
	offset time.Duration
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	base := c.fixed
	if base.IsZero() {
		base = time.Now()
	}
	return base.Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// Freeze stops the clock at its current time until Resume.
func (c *Clock) Freeze() {
	now := c.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fixed, c.offset = now, 0
}

// Resume lets a frozen clock run again from the real time, keeping any
// offset added by Advance since the freeze.
func (c *Clock) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fixed = time.Time{}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
