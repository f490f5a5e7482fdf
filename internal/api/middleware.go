package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/ids"
)

// statusWriter records the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withRequestID gives every request a req_ id (the Request-Id header and
// the request_id of error bodies) and a logger that carries it, recovers
// panics as 500s, and records metrics.
func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := ids.New(ids.Request)
		w.Header().Set("Request-Id", reqID)
		rlog := &requestLog{base: s.log,
			attrs: []any{"request_id", reqID, "method", r.Method, "path", truncate(r.URL.Path, 200)}}
		ctx := context.WithValue(r.Context(), keyLogger, rlog)
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				rlog.logger().Error("HandlerPanicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if sw.status == 0 {
					writeError(sw, r, errInternal(fmt.Errorf("panic: %v", v)))
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			elapsed := time.Since(start)
			pattern := r.Pattern
			if pattern == "" {
				pattern = "unmatched"
			}
			s.metrics.observe(pattern, status, elapsed)
			if s.log.Enabled(ctx, slog.LevelDebug) {
				rlog.logger().Debug("RequestCompleted", "status", status,
					"duration_ms", elapsed.Milliseconds(), "bytes", sw.bytes)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// access says who may call a route.
type access struct {
	// scope is the scope an API key needs; "" lets any key through.
	scope string
	// device lets device tokens call the route (the handler checks that the
	// token's device owns the resource).
	device bool
	// upload lets upload tokens call the route (the handler checks the
	// recording).
	upload bool
	// noKey refuses API keys (token refresh is for devices only).
	noKey bool
	// reissue names the credential a replayed response must mint again.
	reissue string
	// limit names an extra rate-limit bucket ("transcriptions").
	limit string
}

// handlerFunc is an API handler: it writes a success response itself and
// returns an error for everything else.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error

// guard authenticates the request, checks access and rate limits, applies
// Idempotency-Key, and runs h.
func (s *Server) guard(a access, h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authorize(r, a)
		if err != nil {
			writeError(w, r, err)
			return
		}
		r = withPrincipal(r, p)
		if err := s.limits.allow(w, p, a.limit); err != nil {
			writeError(w, r, err)
			return
		}
		if r.Method == http.MethodPost && r.Header.Get("Idempotency-Key") != "" {
			s.idempotent(w, r, p, a, h)
			return
		}
		if err := h(w, r, p); err != nil {
			writeError(w, r, err)
		}
	}
}

// withPrincipal returns r carrying p, and a logger that names p's project,
// mode and credential.
func withPrincipal(r *http.Request, p *auth.Principal) *http.Request {
	ctx := context.WithValue(r.Context(), keyPrincipal, p)
	rlog := requestLogFrom(ctx).with("project_id", p.ProjectID, "mode", p.Mode, "credential", p.KeyID)
	return r.WithContext(context.WithValue(ctx, keyLogger, rlog))
}

func (s *Server) authorize(r *http.Request, a access) (*auth.Principal, error) {
	secret := bearer(r)
	if secret == "" {
		return nil, errUnauthorized("Missing credential: send Authorization: Bearer <key or token>.")
	}
	p, err := s.auth.Authenticate(r.Context(), secret)
	if errors.Is(err, auth.ErrInvalid) {
		return nil, errUnauthorized("Invalid, revoked or expired credential.")
	}
	if err != nil {
		return nil, errUnavailable("Could not check the credential; retry later.", err)
	}
	switch p.Kind {
	case auth.KindKey:
		if a.noKey {
			return nil, errForbidden("This endpoint accepts only a device token.")
		}
		if a.scope != "" && !p.HasScope(a.scope) {
			return nil, errScope(a.scope)
		}
	case auth.KindDevice:
		if !a.device {
			return nil, errForbidden("Device tokens cannot call this endpoint.")
		}
	case auth.KindUploadToken:
		if !a.upload {
			return nil, errForbidden("Upload tokens cannot call this endpoint.")
		}
	}
	return p, nil
}

// admin guards the admin API with the admin token.
func (s *Server) admin(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.adminAuthorized(r) {
			writeError(w, r, errUnauthorized("The admin API needs the server's admin token."))
			return
		}
		if err := h(w, r); err != nil {
			writeError(w, r, err)
		}
	}
}

func retryAfterSeconds(d time.Duration) string {
	sec := int(d.Seconds() + 0.999)
	if sec < 1 {
		sec = 1
	}
	return strconv.Itoa(sec)
}
