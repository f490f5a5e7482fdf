package disk

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/botaserver/bota/internal/blob"
)

// Handler returns the handler of signed URLs. It serves PUT, GET and HEAD
// on UploadsPath + key and expects the full request path (mount it at
// UploadsPath without stripping the prefix). GET signatures also allow
// HEAD. Every rejected request gets the API's JSON error body, with the
// request id taken from the Request-Id response header when an outer
// middleware has set it.
func (s *Store) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// httpError is a rejection with its HTTP status and API error code.
type httpError struct {
	status  int
	code    string
	message string
}

func forbidden(format string, args ...any) *httpError {
	return &httpError{http.StatusForbidden, "forbidden", fmt.Sprintf(format, args...)}
}

func (s *Store) serveHTTP(w http.ResponseWriter, r *http.Request) {
	log := s.log.With("request_id", w.Header().Get("Request-Id"), "method", r.Method)

	key, herr := keyFromRequest(r)
	if herr != nil {
		s.reject(w, log, herr)
		return
	}
	log = log.With("key", key)

	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if method != http.MethodPut && method != http.MethodGet {
		s.reject(w, log, forbidden("method %s is not allowed on a signed URL", r.Method))
		return
	}

	sig, herr := s.verifySignature(r.URL.Query(), method, key)
	if herr != nil {
		s.reject(w, log, herr)
		return
	}

	if method == http.MethodPut {
		s.servePut(w, r, log, key, sig)
		return
	}
	s.serveGet(w, r, log, key)
}

// keyFromRequest returns the object key named by the request path. Keys
// never need escaping, so any escaped byte (an encoded '/', '\', NUL or
// '.') in the path rejects the request before it is decoded.
func keyFromRequest(r *http.Request) (string, *httpError) {
	escaped := r.URL.EscapedPath()
	if !strings.HasPrefix(escaped, UploadsPath) {
		return "", &httpError{http.StatusNotFound, "not_found",
			fmt.Sprintf("no signed URL is served at %s", r.URL.Path)}
	}
	if strings.Contains(escaped, "%") {
		return "", forbidden("object key contains an escaped byte; keys use only A-Z, a-z, " +
			"0-9, '.', '_', '-' and '/'")
	}
	key := strings.TrimPrefix(r.URL.Path, UploadsPath)
	if err := validateKey(key); err != nil {
		return "", forbidden("invalid object key: %v", err)
	}
	return key, nil
}

// verifySignature rebuilds the signed values from the query and the
// request, checks the signature and the expiry, and returns the values.
func (s *Store) verifySignature(q url.Values, method, key string) (signature, *httpError) {
	for name, values := range q {
		if len(values) > 1 {
			return signature{}, forbidden("query parameter %q is repeated", name)
		}
	}
	encoded := q.Get(paramSignature)
	if encoded == "" {
		return signature{}, forbidden("the URL is not signed: %s is missing", paramSignature)
	}
	expires, err := strconv.ParseInt(q.Get(paramExpires), 10, 64)
	if err != nil {
		return signature{}, forbidden("invalid or missing %s", paramExpires)
	}

	sig := signature{
		kind:        kindObject,
		method:      method,
		key:         key,
		contentType: q.Get(paramContentType),
		expires:     expires,
	}
	sizeParam := paramContentLength
	if q.Has(paramPrefix) {
		sig.kind = kindPrefix
		sig.key = q.Get(paramPrefix)
		sig.suffix = q.Get(paramSuffix)
		sizeParam = paramMaxSize
	}
	if raw := q.Get(sizeParam); raw != "" {
		sig.size, err = strconv.ParseInt(raw, 10, 64)
		if err != nil || sig.size < 0 {
			return signature{}, forbidden("invalid %s", sizeParam)
		}
	}

	if !sig.verify(s.secret, encoded) {
		return signature{}, forbidden("the signature does not match the URL")
	}
	// The values are authentic from here on.
	if now := time.Now().Unix(); now > sig.expires {
		return signature{}, forbidden("the signed URL expired at %s",
			time.Unix(sig.expires, 0).UTC().Format(time.RFC3339))
	}
	if sig.kind == kindPrefix {
		if method != http.MethodPut {
			return signature{}, forbidden("a prefix signature allows only PUT")
		}
		if herr := checkPrefixKey(key, sig.key, sig.suffix); herr != nil {
			return signature{}, herr
		}
	}
	return sig, nil
}

// MaxPrefixNumber is the largest value a prefix template accepts, the
// API's limit on the chunks of one streamed recording.
const MaxPrefixNumber = 100_000

// checkPrefixKey checks that key is prefix + value + suffix with a value
// that is a decimal number from 1 to MaxPrefixNumber without leading zeros.
func checkPrefixKey(key, prefix, suffix string) *httpError {
	if len(key) <= len(prefix)+len(suffix) ||
		!strings.HasPrefix(key, prefix) || !strings.HasSuffix(key, suffix) {
		return forbidden("object key is outside the signed prefix and suffix")
	}
	value := key[len(prefix) : len(key)-len(suffix)]
	n, err := strconv.Atoi(value)
	if err != nil || n < 1 || n > MaxPrefixNumber || strconv.Itoa(n) != value {
		return forbidden("the chunk number %q is not a whole number from 1 to %d", value, MaxPrefixNumber)
	}
	return nil
}

func (s *Store) servePut(w http.ResponseWriter, r *http.Request, log *slog.Logger, key string,
	sig signature) {
	if got := r.Header.Get("Content-Type"); got != sig.contentType {
		s.reject(w, log, forbidden("Content-Type %q does not match the signed %q",
			got, sig.contentType))
		return
	}
	size := r.ContentLength
	if size < 0 {
		s.reject(w, log, forbidden("Content-Length is required"))
		return
	}
	if sig.kind == kindObject && sig.size > 0 && size != sig.size {
		s.reject(w, log, forbidden("Content-Length %d does not match the signed %d",
			size, sig.size))
		return
	}
	limit := s.maxSize
	if sig.kind == kindPrefix {
		limit = min(sig.size, s.maxSize)
	}
	if size > limit {
		s.reject(w, log, &httpError{http.StatusRequestEntityTooLarge, "payload_too_large",
			fmt.Sprintf("Content-Length %d is more than the maximum of %d bytes", size, limit)})
		return
	}

	if s.sealed(key) {
		s.reject(w, log, &httpError{http.StatusConflict, "conflict",
			"the object is final: its upload was completed or it was deleted; request a new upload URL"})
		return
	}
	if sig.kind == kindPrefix && s.sealed(sig.key) {
		s.reject(w, log, &httpError{http.StatusConflict, "conflict",
			"the stream is finalized or deleted: its chunks are final"})
		return
	}

	err := s.write(r.Context(), key, r.Body, size, sig.contentType)
	if err != nil && (errors.Is(err, errBodyTooShort) || errors.Is(err, errBodyTooLong) ||
		r.Context().Err() != nil) {
		// The client went away mid-body, so this response probably reaches
		// no one.
		log.Info("BlobUploadAborted", "size", size, "error", err)
		s.writeError(w, &httpError{http.StatusBadRequest, "invalid_request",
			"the request body ended before Content-Length bytes"})
		return
	}
	if err != nil {
		log.Error("BlobUploadFailed", "size", size, "error", err)
		s.writeError(w, &httpError{http.StatusInternalServerError, "internal_error",
			"the object could not be stored"})
		return
	}
	log.Info("BlobStored", "size", size)
	w.WriteHeader(http.StatusOK)
}

func (s *Store) serveGet(w http.ResponseWriter, r *http.Request, log *slog.Logger, key string) {
	f, fi, err := s.openObject("open", key)
	if errors.Is(err, blob.ErrNotFound) {
		s.writeError(w, &httpError{http.StatusNotFound, "not_found", "the object does not exist"})
		return
	}
	if err != nil {
		log.Error("BlobReadFailed", "error", err)
		s.writeError(w, &httpError{http.StatusInternalServerError, "internal_error",
			"the object could not be read"})
		return
	}
	defer func() { _ = f.Close() }()

	contentType, _ := s.meta(key, f)
	w.Header().Set("Content-Type", contentType)
	// ServeContent sets Content-Length and handles HEAD and Range requests.
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// reject logs a rejected request at Warn and writes the error.
func (s *Store) reject(w http.ResponseWriter, log *slog.Logger, herr *httpError) {
	log.Warn("BlobRequestRejected", "status", herr.status, "reason", herr.message)
	s.writeError(w, herr)
}

// errorResponse is the API's error body.
type errorResponse struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string  `json:"code"`
	Message   string  `json:"message"`
	Param     *string `json:"param"`
	Details   any     `json:"details"`
	RequestID *string `json:"request_id"`
}

func (s *Store) writeError(w http.ResponseWriter, herr *httpError) {
	body := errorResponse{Error: errorDetail{Code: herr.code, Message: herr.message}}
	if id := w.Header().Get("Request-Id"); id != "" {
		body.Error.RequestID = &id
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(herr.status)
	if err := json.NewEncoder(w).Encode(body); err != nil {
		s.log.Debug("BlobErrorWriteFailed", "error", err)
	}
}
