package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/config"
	"github.com/botaserver/bota/internal/jobs"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/processing"
	"github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/speech/assemblyai"
	"github.com/botaserver/bota/internal/speech/deepgram"
	"github.com/botaserver/bota/internal/speech/local"
	"github.com/botaserver/bota/internal/speech/whisper"
	"github.com/botaserver/bota/internal/webhook"
)

// transcriptionTimeout bounds one transcription attempt on audio of no
// length; an attempt gets the recording's duration on top, up to a minute
// less than --job-rescue-after.
const transcriptionTimeout = 30 * time.Minute

// engines builds the speech registry: the local engine is the default, and
// each hosted service is added when it is configured.
func engines(cfg *config.Config, log *slog.Logger) *speech.Registry {
	var hosted []speech.Engine
	if cfg.WhisperURL != "" {
		hosted = append(hosted, whisper.New(whisper.Config{BaseURL: cfg.WhisperURL, APIKey: cfg.WhisperKey,
			Model: cfg.WhisperModel, MaxFileBytes: int64(cfg.WhisperMaxFileBytes), Logger: log}))
	}
	if cfg.DeepgramKey != "" {
		hosted = append(hosted, deepgram.New(deepgram.Config{BaseURL: cfg.DeepgramURL, APIKey: cfg.DeepgramKey, Logger: log}))
	}
	if cfg.AssemblyAIKey != "" {
		hosted = append(hosted, assemblyai.New(assemblyai.Config{BaseURL: cfg.AssemblyAIURL, APIKey: cfg.AssemblyAIKey,
			Logger: log}))
	}
	return speech.NewRegistry(local.New(local.Config{Workers: cfg.SpeechWorkers, Logger: log}), hosted...)
}

// pipeline is the background processing of one node.
type pipeline struct {
	queue      *jobs.Queue
	pipeline   *processing.Pipeline
	dispatcher *processing.Dispatcher
	webhooks   *webhook.Service
}

// newPipeline opens the job queue on the node's database and builds the
// transcription pipeline, webhook delivery and the outbox dispatcher.
// secret is the server secret, which seals webhook signing secrets.
func newPipeline(ctx context.Context, cfg *config.Config, db *database, blobs blob.Store, secret []byte, nodeID string, log *slog.Logger, handlers ...processing.EventHandler) (*pipeline, error) {
	p := &processing.Pipeline{
		Store:   db.store,
		Blob:    blobs,
		Engines: engines(cfg, log),
		Log:     log,
		Render:  api.TranscriptionJSON,
		AutoTranscription: func(ctx context.Context, t model.Tenant) (bool, *string, error) {
			pc, err := api.Processing(ctx, db.store, t)
			return pc.AutoTranscription, pc.Provider, err
		},
	}
	box, err := webhook.NewSecretBox(secret)
	if err != nil {
		return nil, err
	}
	hooks := &webhook.Service{
		Store:  db.store,
		Box:    box,
		Client: webhook.NewClient(webhook.GuardConfig{AllowPrivate: cfg.WebhookPrivate}),
		Log:    log.With("component", "webhooks"),

		EndpointConcurrency: cfg.WebhookEndpointConcurrency,
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &processing.TranscribeWorker{Pipeline: p, Limit: transcriptionTimeout,
		MaxLimit: cfg.JobRescueAfter - time.Minute})
	river.AddWorker(workers, &webhook.Worker{Service: hooks})

	qcfg := jobs.Config{
		ID:                   nodeID,
		Workers:              workers,
		Queues:               map[string]int{processing.SpeechQueue: cfg.JobWorkers, webhook.QueueName: cfg.WebhookWorkers},
		Logger:               jobsLogger(cfg, log),
		JobTimeout:           time.Minute,
		RescueStuckJobsAfter: cfg.JobRescueAfter,
	}
	if db.pool != nil {
		qcfg.Pool = db.pool
	} else {
		qcfg.SQLite = db.store.DB()
	}
	q, err := jobs.Open(ctx, qcfg)
	if err != nil {
		return nil, err
	}
	if err := q.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrate job queue: %w", err)
	}
	p.Queue = processing.RiverQueue{Queue: q}
	hooks.Queue = q
	handlers = append([]processing.EventHandler{p.AutoTranscribe, hooks.Fanout}, handlers...)
	d := processing.NewDispatcher(db.store, p, log.With("component", "dispatcher"), time.Second, handlers...)
	return &pipeline{queue: q, pipeline: p, dispatcher: d, webhooks: hooks}, nil
}
