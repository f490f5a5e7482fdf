package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"time"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/model"
)

// idempotencyTTL is how long a key and its response are kept.
const idempotencyTTL = 24 * time.Hour

var idempotencyKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

// secretFields are response fields that hold a credential. They are never
// stored: a replay mints a fresh credential instead (see reissuers).
var secretFields = []string{"device_token", "upload_token", "secret"}

// reissuer mints the credential of a replayed response again, revoking the
// one from the lost response, and writes it into body.
type reissuer func(r *http.Request, p *auth.Principal, body map[string]any) error

// idempotent runs h at most once per Idempotency-Key, scoped to the
// project and mode (and to the device or recording for tokens). Only 2xx
// responses are stored, so a request refused before any write can be
// corrected and retried with the same key.
func (s *Server) idempotent(w http.ResponseWriter, r *http.Request, p *auth.Principal, a access, h handlerFunc) {
	key := r.Header.Get("Idempotency-Key")
	if !idempotencyKeyPattern.MatchString(key) {
		writeError(w, r, errInvalid("Idempotency-Key", "Idempotency-Key must be 1 to 255 characters of A-Z, a-z, 0-9, _ and -."))
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	switch p.Kind {
	case auth.KindDevice:
		key = p.DeviceID + ":" + key
	case auth.KindUploadToken:
		key = p.RecordingID + ":" + key
	}
	endpoint := r.Method + " " + r.URL.Path
	sum := sha256.Sum256(body)
	bodyHash := hex.EncodeToString(sum[:])
	tenant := model.Tenant{ProjectID: p.ProjectID, Mode: p.Mode}

	rec, err := s.store.BeginIdempotent(r.Context(), tenant, key, endpoint, bodyHash, idempotencyTTL)
	if err != nil {
		writeError(w, r, errInternal(err))
		return
	}
	if rec != nil {
		s.replay(w, r, p, rec.Endpoint == endpoint && rec.BodyHash == bodyHash, rec.Done, rec.Status, rec.Response, rec.Reissue)
		return
	}

	rw := httptest.NewRecorder()
	for k, v := range w.Header() {
		rw.Header()[k] = v
	}
	if err := h(rw, r, p); err != nil {
		writeError(rw, r, err)
	}
	if rw.Code >= 200 && rw.Code < 300 {
		stored, reissue := redactSecrets(rw.Body.Bytes(), a.reissue)
		if err := s.store.FinishIdempotent(r.Context(), tenant, key, rw.Code, stored, reissue); err != nil {
			loggerFrom(r.Context()).Error("IdempotencyStoreFailed", "err", err)
			_ = s.store.ReleaseIdempotent(r.Context(), tenant, key)
		}
	} else if err := s.store.ReleaseIdempotent(r.Context(), tenant, key); err != nil {
		loggerFrom(r.Context()).Error("IdempotencyReleaseFailed", "err", err)
	}
	for k, v := range rw.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rw.Code)
	w.Write(rw.Body.Bytes())
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, p *auth.Principal, same, done bool, status int, body []byte, reissue string) {
	if !same {
		writeError(w, r, &apiError{Status: 400, Code: "idempotency_key_reused", Param: "Idempotency-Key",
			Message: "This Idempotency-Key was used with a different endpoint or body; use a new key."})
		return
	}
	if !done {
		writeError(w, r, &apiError{Status: 409, Code: "idempotency_key_in_use", Param: "Idempotency-Key",
			Message: "A request with this Idempotency-Key is still running; retry in a moment."})
		return
	}
	if reissue != "" {
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil {
			writeError(w, r, errInternal(err))
			return
		}
		fn := s.reissuers[reissue]
		if fn == nil {
			writeError(w, r, errInternal(nil))
			return
		}
		if err := fn(r, p, obj); err != nil {
			writeError(w, r, err)
			return
		}
		fresh, err := json.Marshal(obj)
		if err != nil {
			writeError(w, r, errInternal(err))
			return
		}
		body = append(fresh, '\n')
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Idempotent-Replayed", "true")
	w.WriteHeader(status)
	w.Write(body)
}

// redactSecrets nulls the credential fields of a response body. It returns
// the body to store and the reissuer a replay needs ("" when none).
func redactSecrets(body []byte, reissue string) ([]byte, string) {
	if reissue == "" {
		return body, ""
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return body, ""
	}
	found := false
	for _, f := range secretFields {
		if v, ok := obj[f]; ok && v != nil {
			obj[f] = nil
			found = true
		}
	}
	if !found {
		return body, ""
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return body, ""
	}
	return out, reissue
}
