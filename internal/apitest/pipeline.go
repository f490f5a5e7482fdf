package apitest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/jobs"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/processing"
	"github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/speech/local"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/store/postgres"
	"github.com/botaserver/bota/internal/testenv"
)

// PipelineConfig chooses the background processing of NewPipeline.
type PipelineConfig struct {
	// Engines is the speech registry. Default: a local engine with
	// SpeechWorkers recogniser processes and no hosted engine.
	Engines *speech.Registry
	// SpeechWorkers is the local engine's process cap when Engines is nil.
	// Default 2.
	SpeechWorkers int
	// JobWorkers is how many transcription jobs run at once. Default 2.
	JobWorkers int
	// JobTimeout bounds one transcription attempt. Default 2 minutes.
	JobTimeout time.Duration
	// Options are passed to New.
	Options []Option
}

// PipelineEnv is an Env whose server transcribes: the outbox dispatcher
// runs and a River queue on the same database works transcription jobs.
type PipelineEnv struct {
	*Env
	// Pipeline is the server's processing.Pipeline.
	Pipeline *processing.Pipeline
	// Queue is the started job queue.
	Queue *jobs.Queue
	// Dispatcher reads the events outbox every 100 ms and on each request
	// that stored events.
	Dispatcher *processing.Dispatcher
	// Local is the default engine when PipelineConfig.Engines was nil.
	Local *local.Engine
}

// NewPipeline starts a server like New with the transcription pipeline of
// `bota serve` wired in: the processing config decides on automatic
// transcription, the dispatcher turns recording.uploaded events into
// transcriptions, and the job queue runs them on cfg.Engines. Cleanup
// stops the queue (cancelling running jobs after 10 seconds) and the
// dispatcher before the database closes.
func NewPipeline(t testing.TB, b Backend, cfg PipelineConfig) *PipelineEnv {
	t.Helper()
	if cfg.JobWorkers <= 0 {
		cfg.JobWorkers = 2
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = 2 * time.Minute
	}

	// The server needs the pipeline at construction and the pipeline
	// needs the server's store and blob store, so the pipeline's fields
	// are filled in after New returns and before any request is sent.
	p := &processing.Pipeline{Render: api.TranscriptionJSON}
	var dispatcher *processing.Dispatcher
	wake := func() {
		if dispatcher != nil {
			dispatcher.Wake()
		}
	}
	opts := append([]Option{WithConfig(func(c *api.Config) {
		c.Pipeline = p
		c.OnEvent = wake
	})}, cfg.Options...)

	var pool *pgxpool.Pool
	env := New(t, withPool(b, &pool), opts...)
	logger := slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	pe := &PipelineEnv{Env: env, Pipeline: p}
	engines := cfg.Engines
	if engines == nil {
		pe.Local = local.New(local.Config{Workers: cfg.SpeechWorkers, Logger: logger})
		engines = speech.NewRegistry(pe.Local)
	}
	st := env.Store
	p.Store, p.Blob, p.Engines, p.Log = st, env.Blobs, engines, logger
	p.AutoTranscription = func(ctx context.Context, t model.Tenant) (bool, *string, error) {
		pc, err := api.Processing(ctx, st, t)
		return pc.AutoTranscription, pc.Provider, err
	}

	workers := river.NewWorkers()
	river.AddWorker(workers, &processing.TranscribeWorker{Pipeline: p, Limit: cfg.JobTimeout})
	qcfg := jobs.Config{
		Workers:              workers,
		Queues:               map[string]int{processing.SpeechQueue: cfg.JobWorkers},
		Logger:               logger.With("component", "jobs"),
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.JobTimeout + time.Minute,
		FetchPollInterval:    100 * time.Millisecond,
		Test:                 true,
	}
	if pool != nil {
		qcfg.Pool = pool
	} else {
		qcfg.SQLite = st.DB()
	}
	ctx := context.Background()
	q, err := jobs.Open(ctx, qcfg)
	if err != nil {
		t.Fatalf("apitest: open job queue: %v", err)
	}
	if err := q.Migrate(ctx); err != nil {
		t.Fatalf("apitest: migrate job queue: %v", err)
	}
	p.Queue = processing.RiverQueue{Queue: q}
	pe.Queue = q

	dispatcher = processing.NewDispatcher(st, p, logger.With("component", "dispatcher"),
		100*time.Millisecond, p.AutoTranscribe)
	pe.Dispatcher = dispatcher
	if err := q.Start(ctx); err != nil {
		t.Fatalf("apitest: start job queue: %v", err)
	}
	bg, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { dispatcher.Run(bg) })
	t.Cleanup(func() {
		stop()
		wg.Wait()
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.Stop(stopCtx); err != nil {
			t.Errorf("apitest: stop job queue: %v", err)
		}
	})
	return pe
}

// withPool returns b, changed on PostgreSQL to also store the store's pgx
// pool in *pool, which the job queue needs.
func withPool(b Backend, pool **pgxpool.Pool) Backend {
	if b.Name != "postgres" {
		return b
	}
	return Backend{Name: b.Name, Open: func(t testing.TB) *store.Store {
		t.Helper()
		url := testenv.PostgresURL(t)
		st, p, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatalf("apitest: open postgres: %v", err)
		}
		// Registered after PostgresURL's cleanup, so it runs before the
		// database is dropped, and before the queue's cleanup, so it runs
		// after the queue stopped.
		t.Cleanup(func() {
			st.Close()
			p.Close()
		})
		*pool = p
		return st
	}}
}

// For returns a copy of the PipelineEnv whose helpers report to t.
func (e *PipelineEnv) For(t testing.TB) *PipelineEnv {
	c := *e
	c.Env = e.Env.For(t)
	return &c
}

// Upload creates a recording with token (a device token, an upload token's
// key or a secret key), uploads data with contentType through upload-url,
// a PUT to the signed URL and upload-complete with content_sha256, and
// returns the recording id. It fails the test unless each step succeeds.
func (e *Env) Upload(token, contentType string, data []byte) string {
	e.t.Helper()
	r := e.Do("POST", "/v1/recordings", token, map[string]any{})
	e.ExpectStatus(r, http.StatusCreated)
	recID := r.String("id")

	u := e.Do("POST", "/v1/recordings/"+recID+"/upload-url", token, map[string]any{
		"type": "audio", "content_type": contentType, "file_size_bytes": len(data),
	})
	e.ExpectStatus(u, http.StatusOK)
	req, err := http.NewRequest(http.MethodPut, u.String("upload_url"), bytes.NewReader(data))
	if err != nil {
		e.t.Fatalf("apitest: new PUT: %v", err)
	}
	headers, _ := u.Body["headers"].(map[string]any)
	for k, v := range headers {
		s, _ := v.(string)
		req.Header.Set(k, s)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("apitest: PUT to upload_url: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("apitest: PUT to upload_url: status %d", res.StatusCode)
	}

	sum := sha256.Sum256(data)
	c := e.Do("POST", "/v1/recordings/"+recID+"/upload-complete", token,
		map[string]any{"content_sha256": hex.EncodeToString(sum[:])})
	e.ExpectStatus(c, http.StatusOK)
	return recID
}

// WaitRecording polls GET /v1/recordings/{id} with the test key until the
// recording's status is one of statuses, and returns the recording. It
// fails the test after timeout.
func (e *Env) WaitRecording(recID string, timeout time.Duration, statuses ...string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := e.Do("GET", "/v1/recordings/"+recID, e.TestKey, nil)
		e.ExpectStatus(r, http.StatusOK)
		status := r.String("status")
		for _, s := range statuses {
			if status == s {
				return r.Body
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("apitest: recording %s is %s after %s, want one of %v; body %s",
				recID, status, timeout, statuses, r.Raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitTranscription polls GET /v1/transcriptions/{id} with the test key
// until the transcription is completed or failed, and returns it. It fails
// the test after timeout.
func (e *Env) WaitTranscription(id string, timeout time.Duration) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := e.Do("GET", "/v1/transcriptions/"+id, e.TestKey, nil)
		e.ExpectStatus(r, http.StatusOK)
		switch r.String("status") {
		case model.TranscriptionCompleted, model.TranscriptionFailed:
			return r.Body
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("apitest: transcription %s is %s after %s; body %s",
				id, r.String("status"), timeout, r.Raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// EncodeOpus converts an audio file with ffmpeg to Opus in an Ogg
// container at 32 kb/s, as devices upload it, and returns the bytes.
func EncodeOpus(t testing.TB, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(path)+".opus")
	cmd := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", path,
		"-c:a", "libopus", "-b:a", "32k", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apitest: ffmpeg to Opus: %v: %s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("apitest: read Opus file: %v", err)
	}
	return data
}

// Tone returns seconds of a 440 Hz sine encoded by ffmpeg in format (an
// ffmpeg muxer such as "ogg" with codec "libopus", or "wav" with
// "pcm_s16le").
func Tone(t testing.TB, seconds float64, format, codec string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("tone-%d.%s", time.Now().UnixNano(), format))
	cmd := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
		"-i", fmt.Sprintf("sine=frequency=440:duration=%g:sample_rate=16000", seconds),
		"-c:a", codec, "-f", format, out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apitest: ffmpeg tone: %v: %s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("apitest: read tone: %v", err)
	}
	return data
}
