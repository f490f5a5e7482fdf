package simulate

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

func testClient(retries int) *client {
	return &client{http: &http.Client{}, retries: retries, attemptTimeout: 5 * time.Second,
		stats: newCollector(), log: slog.New(slog.DiscardHandler)}
}

// scripted responds to the n-th request with statuses[n] (200 after the list
// ends) and records the Idempotency-Key of each request.
type scripted struct {
	mu       sync.Mutex
	statuses []int
	keys     []string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.keys)
	s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
	s.mu.Unlock()
	status := http.StatusOK
	if n < len(s.statuses) {
		status = s.statuses[n]
	}
	w.Header().Set("Content-Type", "application/json")
	switch status {
	case http.StatusOK:
		io.WriteString(w, `{"id":"rec_1"}`)
	case http.StatusTooEarly:
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(status)
		io.WriteString(w, `{"error":{"code":"upload_incomplete","message":"not yet"}}`)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(status)
		io.WriteString(w, `{"error":{"code":"rate_limit_exceeded","message":"slow down"}}`)
	case http.StatusBadRequest:
		w.WriteHeader(status)
		io.WriteString(w, `{"error":{"code":"checksum_mismatch","message":"digest differs"}}`)
	case http.StatusUnauthorized:
		w.WriteHeader(status)
		io.WriteString(w, `{"error":{"code":"unauthorized","message":"bad token"}}`)
	default:
		w.WriteHeader(status)
	}
}

func TestClientRetriesWithSameKey(t *testing.T) {
	h := &scripted{statuses: []int{503, 425, 429}}
	ts := httptest.NewServer(h)
	defer ts.Close()
	cl := testClient(8)
	var out struct {
		ID string `json:"id"`
	}
	err := cl.do(context.Background(), call{step: StepCreate, method: http.MethodPost, url: ts.URL,
		idempotencyKey: "key1", body: map[string]any{"a": 1}, out: &out})
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	if out.ID != "rec_1" {
		t.Errorf("decoded id = %q, want rec_1", out.ID)
	}
	if len(h.keys) != 4 {
		t.Fatalf("server got %d attempts, want 4", len(h.keys))
	}
	for i, k := range h.keys {
		if k != "key1" {
			t.Errorf("attempt %d Idempotency-Key = %q, want key1", i+1, k)
		}
	}
	s := cl.stats.summary(&Config{}, time.Second)
	want := map[string]int{"http_503": 1, "upload_incomplete": 1, "rate_limit_exceeded": 1}
	for kind, n := range want {
		if s.StepErrors[StepCreate][kind] != n {
			t.Errorf("step errors[create][%s] = %d, want %d", kind, s.StepErrors[StepCreate][kind], n)
		}
	}
	if s.Retries != 3 || s.ErrorCount != 3 {
		t.Errorf("retries = %d, errors = %d; want 3 and 3", s.Retries, s.ErrorCount)
	}
	if s.Latency[StepCreate].Count != 1 {
		t.Errorf("latency samples = %d, want 1", s.Latency[StepCreate].Count)
	}
}

func TestClientFinalErrors(t *testing.T) {
	cases := []struct {
		name     string
		statuses []int
		retries  int
		attempts int
		kind     string
	}{
		{"bad request is final", []int{400}, 8, 1, "checksum_mismatch"},
		{"unauthorized is final", []int{401}, 8, 1, "unauthorized"},
		{"retries run out", []int{500, 502, 503, 504}, 3, 4, "http_504"},
		{"no retries", []int{503}, 0, 1, "http_503"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &scripted{statuses: tc.statuses}
			ts := httptest.NewServer(h)
			defer ts.Close()
			err := testClient(tc.retries).do(context.Background(),
				call{step: StepComplete, method: http.MethodPost, url: ts.URL})
			var se *StepError
			if !errors.As(err, &se) {
				t.Fatalf("do = %v, want a *StepError", err)
			}
			if se.Kind != tc.kind {
				t.Errorf("kind = %q, want %q", se.Kind, tc.kind)
			}
			if len(h.keys) != tc.attempts {
				t.Errorf("attempts = %d, want %d", len(h.keys), tc.attempts)
			}
		})
	}
}

// TestClientResendsWholeFile cuts the connection of the first PUT halfway
// through the body and checks that the retry sends the whole file again.
func TestClientResendsWholeFile(t *testing.T) {
	content := make([]byte, 3<<20)
	rand.Read(content)
	path := filepath.Join(t.TempDir(), "clip.opus")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := loadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var attempts int
	var received []byte
	var contentType, contentLength string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts++
		first := attempts == 1
		mu.Unlock()
		if first {
			io.CopyN(io.Discard, r.Body, 1<<20)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		received, contentType, contentLength = body, r.Header.Get("Content-Type"),
			strconv.FormatInt(r.ContentLength, 10)
		mu.Unlock()
	}))
	defer ts.Close()

	cl := testClient(3)
	err = cl.do(context.Background(), call{step: StepPut, method: http.MethodPut, url: ts.URL,
		header: map[string]string{"Content-Type": "audio/opus", "Content-Length": "1"}, file: &file})
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	if attempts != 2 {
		t.Errorf("attempts = %d, want 2", attempts)
	}
	if !bytes.Equal(received, content) {
		t.Errorf("retry delivered %d bytes, want the file's %d bytes unchanged", len(received), len(content))
	}
	if contentType != "audio/opus" {
		t.Errorf("Content-Type = %q, want audio/opus from the signed headers", contentType)
	}
	if contentLength != strconv.Itoa(len(content)) {
		t.Errorf("Content-Length = %s, want %d", contentLength, len(content))
	}
	if n := cl.stats.summary(&Config{}, time.Second).StepErrors[StepPut]["transport"]; n != 1 {
		t.Errorf("transport errors = %d, want 1", n)
	}
}

func TestClientAttemptTimeout(t *testing.T) {
	var mu sync.Mutex
	var attempts int
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts++
		first := attempts == 1
		mu.Unlock()
		if first {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
	}))
	defer ts.Close()
	cl := testClient(2)
	cl.attemptTimeout = 200 * time.Millisecond
	err := cl.do(context.Background(), call{step: StepHeartbeat, method: http.MethodPost, url: ts.URL})
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	if n := cl.stats.summary(&Config{}, time.Second).StepErrors[StepHeartbeat]["timeout"]; n != 1 {
		t.Errorf("timeout errors = %d, want 1", n)
	}
}

func TestClientStopsOnCancel(t *testing.T) {
	ts := httptest.NewServer(&scripted{statuses: []int{503, 503, 503}})
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := testClient(8).do(ctx, call{step: StepCreate, method: http.MethodPost, url: ts.URL})
	var se *StepError
	if !errors.As(err, &se) || se.Kind != "canceled" {
		t.Errorf("do = %v, want kind canceled", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	if d := parseRetryAfter(""); d != 0 {
		t.Errorf("empty = %s, want 0", d)
	}
	if d := parseRetryAfter("garbage"); d != 0 {
		t.Errorf("garbage = %s, want 0", d)
	}
	if d := parseRetryAfter("2"); d < 2*time.Second || d > 2*time.Second+250*time.Millisecond {
		t.Errorf("2 = %s, want 2 s plus at most 250 ms of jitter", d)
	}
	date := time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)
	if d := parseRetryAfter(date); d <= time.Second || d > 3*time.Second {
		t.Errorf("date 3 s ahead = %s, want between 1 s and 3 s", d)
	}
}

func TestBackoffBounds(t *testing.T) {
	for attempt := range 40 {
		ceiling := backoffMax
		if attempt < 16 {
			ceiling = min(backoffBase<<attempt, backoffMax)
		}
		for range 20 {
			if d := backoff(attempt); d < ceiling/2 || d > ceiling {
				t.Fatalf("backoff(%d) = %s, want between %s and %s", attempt, d, ceiling/2, ceiling)
			}
		}
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := percentiles(ds)
	want := Latency{Count: 100, P50: 50, P90: 90, P99: 99, Max: 100}
	if l != want {
		t.Errorf("percentiles(1..100 ms) = %+v, want %+v", l, want)
	}
	one := percentiles([]time.Duration{7 * time.Millisecond})
	if one.P50 != 7 || one.P99 != 7 || one.Max != 7 {
		t.Errorf("percentiles(7 ms) = %+v, want 7 everywhere", one)
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{URLs: []string{"http://127.0.0.1:8080/"}, APIKey: "sk_test_x", Devices: 4,
		Files: []string{"a.opus", "b.opus"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.URLs[0] != "http://127.0.0.1:8080" {
		t.Errorf("URL = %q, want the trailing slash trimmed", cfg.URLs[0])
	}
	if cfg.UploadsPerDevice != 2 || cfg.Concurrency != 4 || cfg.Retries != DefaultRetries ||
		cfg.Heartbeats != 1 || cfg.Prefix != DefaultPrefix || len(cfg.RunID) != 8 || cfg.Client == nil {
		t.Errorf("defaults = %+v", cfg)
	}
	bad := []Config{
		{APIKey: "k", Devices: 1, Files: []string{"a"}},
		{URLs: []string{"127.0.0.1:8080"}, APIKey: "k", Devices: 1, Files: []string{"a"}},
		{URLs: []string{"http://h"}, Devices: 1, Files: []string{"a"}},
		{URLs: []string{"http://h"}, APIKey: "k", Files: []string{"a"}},
		{URLs: []string{"http://h"}, APIKey: "k", Devices: 1},
		{URLs: []string{"http://h"}, APIKey: "k", Devices: 1, Files: []string{"a"}, Prefix: "a/b"},
	}
	for i, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("config %d validated, want an error", i)
		}
	}
}

func TestFindAudio(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"b.OPUS", "a.wav", "notes.txt", "c.m4a"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "d.opus"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := FindAudio(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.wav", "b.OPUS", "c.m4a"}
	if len(got) != len(want) {
		t.Fatalf("FindAudio = %v, want %v", got, want)
	}
	for i := range want {
		if filepath.Base(got[i]) != want[i] {
			t.Errorf("FindAudio[%d] = %s, want %s", i, filepath.Base(got[i]), want[i])
		}
	}
	if ct := ContentType("x.m4a"); ct != "audio/mp4" {
		t.Errorf("ContentType(x.m4a) = %q, want audio/mp4", ct)
	}
	if _, err := FindAudio(t.TempDir()); err == nil {
		t.Error("FindAudio of an empty folder succeeded, want an error")
	}
}
