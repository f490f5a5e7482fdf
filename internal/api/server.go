// Package api serves the Bota HTTP API: one route table (routes.go) and a
// handler per endpoint.
package api

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/processing"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/webhook"
)

// Config holds the settings the handlers need.
type Config struct {
	// AdminToken guards /admin/v1; empty disables the admin API.
	AdminToken string
	// Secret signs cursors.
	Secret []byte
	// RateLimit is the per-project request rate per second; 0 disables
	// every limit.
	RateLimit float64
	// DeviceRateLimit is the per-device and per-upload-token rate.
	DeviceRateLimit float64
	// TranscriptionRateLimit is transcription creates per minute.
	TranscriptionRateLimit float64
	// DeviceTokenTTL ends device tokens after this long; 0 means never.
	DeviceTokenTTL time.Duration
	// PublicURL is the absolute base URL clients reach the server at.
	PublicURL string
	// MaxFileSize bounds one media file; MaxMedia the media of a recording.
	MaxFileSize int64
	MaxMedia    int
	// Pipeline creates transcriptions.
	Pipeline *processing.Pipeline
	// OnEvent is called after a request stored events, to wake the
	// background work that reads them. It may be nil.
	OnEvent func()
	// HeartbeatInterval is the expected time between heartbeats; a device
	// is online while its last heartbeat is younger than twice this.
	HeartbeatInterval time.Duration
	// Webhooks queues test events and manual redeliveries. When nil, those
	// two routes answer 503 and the rest of the webhook API still works.
	Webhooks *webhook.Service
	// WebhookGuard checks endpoint URLs: AllowPrivate is the operator's
	// --webhook-allow-private, and Resolver may fix DNS answers in tests.
	WebhookGuard webhook.GuardConfig
}

// Server holds the API's dependencies.
type Server struct {
	cfg     Config
	store   *store.Store
	blob    blob.Store
	auth    *auth.Authenticator
	log     *slog.Logger
	limits  *limiter
	metrics *metrics
	mux     *http.ServeMux
	// reissuers mint credentials again for replayed responses.
	reissuers map[string]reissuer
	// tokenDevices speeds up the heartbeats of device tokens seen before.
	tokenDevices tokenDevices
}

// New returns a Server. Call Handler for its http.Handler.
func New(cfg Config, st *store.Store, bs blob.Store, log *slog.Logger) *Server {
	if cfg.MaxFileSize == 0 {
		cfg.MaxFileSize = 2 << 30
	}
	if cfg.MaxMedia == 0 {
		cfg.MaxMedia = 50
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 60 * time.Second
	}
	s := &Server{
		cfg:     cfg,
		store:   st,
		blob:    bs,
		auth:    &auth.Authenticator{Store: st},
		log:     log,
		limits:  newLimiter(cfg, func() time.Time { return st.Now() }),
		metrics: newMetrics(),
	}
	s.auth.UploadToken = s.lookupUploadToken
	s.reissuers = map[string]reissuer{}
	s.reissuers["device_token"] = s.reissueDeviceToken
	s.reissuers["upload_token"] = s.reissueUploadToken
	s.reissuers["webhook_secret"] = s.reissueWebhookSecret
	s.mux = http.NewServeMux()
	s.routes()
	return s
}

// Handler returns the server's root handler.
func (s *Server) Handler() http.Handler {
	return s.withRequestID(s.mux)
}

// SetClusterSize tells the rate limiter how many nodes share the limits.
func (s *Server) SetClusterSize(n int) { s.limits.setNodes(n) }

// Mount serves an extra handler under pattern (for example the local blob
// store's /uploads/ path).
func (s *Server) Mount(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

func (s *Server) adminAuthorized(r *http.Request) bool {
	if s.cfg.AdminToken == "" {
		return false
	}
	got := bearer(r)
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.AdminToken)) == 1
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && (h[:7] == "Bearer " || h[:7] == "bearer ") {
		return h[7:]
	}
	return ""
}

type ctxKey int

const (
	keyLogger ctxKey = iota
	keyPrincipal
)

// requestLog is the logger of one request, made on first use: slog
// formats a logger's attributes when the logger is made, and most requests
// log nothing at the usual levels.
type requestLog struct {
	base  *slog.Logger
	attrs []any
	once  sync.Once
	log   *slog.Logger
}

func (l *requestLog) logger() *slog.Logger {
	l.once.Do(func() { l.log = l.base.With(l.attrs...) })
	return l.log
}

// with returns the request's logger with args added to its attributes.
func (l *requestLog) with(args ...any) *requestLog {
	return &requestLog{base: l.base, attrs: append(slices.Clip(l.attrs), args...)}
}

// requestLogFrom returns the request's logger, or one over slog.Default
// outside a request.
func requestLogFrom(ctx context.Context) *requestLog {
	if l, ok := ctx.Value(keyLogger).(*requestLog); ok {
		return l
	}
	return &requestLog{base: slog.Default()}
}

func loggerFrom(ctx context.Context) *slog.Logger {
	return requestLogFrom(ctx).logger()
}

func principalFrom(ctx context.Context) *auth.Principal {
	p, _ := ctx.Value(keyPrincipal).(*auth.Principal)
	return p
}

func hashSecret(secret string) string { return ids.Hash(secret) }

func (s *Server) lookupUploadToken(ctx context.Context, hash string) (string, model.Tenant, string, error) {
	return s.store.UploadTokenByHash(ctx, hash)
}
