package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// apiError is a public error: a stable code, its HTTP status, a message and
// the offending parameter.
type apiError struct {
	Status  int
	Code    string
	Message string
	Param   string
	Details map[string]any
	// RetryAfter, when positive, is sent as the Retry-After header (seconds).
	RetryAfter int
	// Err is the cause, logged for 5xx errors and never sent.
	Err error
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// The error catalogue. Handlers build errors only through these.
func errInvalid(param, format string, args ...any) *apiError {
	return &apiError{Status: 400, Code: "invalid_request", Message: fmt.Sprintf(format, args...), Param: param}
}

func errUnauthorized(msg string) *apiError {
	return &apiError{Status: 401, Code: "unauthorized", Message: msg}
}

func errForbidden(msg string) *apiError {
	return &apiError{Status: 403, Code: "forbidden", Message: msg}
}

func errScope(scope string) *apiError {
	return &apiError{Status: 403, Code: "insufficient_scope",
		Message: fmt.Sprintf("This key lacks the %s scope.", scope), Details: map[string]any{"scope": scope}}
}

func errNotFound(what, param string) *apiError {
	return &apiError{Status: 404, Code: "not_found", Message: what + " not found.", Param: param}
}

func errConflict(code, param, format string, args ...any) *apiError {
	return &apiError{Status: 409, Code: code, Message: fmt.Sprintf(format, args...), Param: param}
}

func errMethod(method, path string, allowed []string) *apiError {
	return &apiError{Status: 405, Code: "method_not_allowed", Details: map[string]any{"allowed": allowed},
		Message: fmt.Sprintf("%s is not supported on %s; use %s.", method, path, strings.Join(allowed, ", "))}
}

func errTooLarge(param, format string, args ...any) *apiError {
	return &apiError{Status: 413, Code: "payload_too_large", Message: fmt.Sprintf(format, args...), Param: param}
}

func errUnsupportedMedia(msg string) *apiError {
	return &apiError{Status: 415, Code: "unsupported_media_type", Message: msg}
}

func errRateLimited(retryAfter int) *apiError {
	return &apiError{Status: 429, Code: "rate_limit_exceeded", RetryAfter: retryAfter,
		Message: "Too many requests; retry after " + strconv.Itoa(retryAfter) + " s."}
}

func errInternal(err error) *apiError {
	return &apiError{Status: 500, Code: "internal_error", Err: err,
		Message: "The server failed to handle the request; retry later and quote the request id if it persists."}
}

func errUnavailable(msg string, err error) *apiError {
	return &apiError{Status: 503, Code: "service_unavailable", Message: msg, Err: err}
}

// writeError sends err as the documented error object. Errors that are not
// an *apiError become 500 internal_error; 5xx causes are logged once here.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errInternal(err)
	}
	log := loggerFrom(r.Context())
	switch {
	case ae.Status >= 500:
		log.Error("RequestFailed", "status", ae.Status, "code", ae.Code, "err", ae.Err)
	case ae.Status == 401 || ae.Status == 403:
		log.Warn("RequestDenied", "status", ae.Status, "code", ae.Code)
	default:
		log.Info("RequestRejected", "status", ae.Status, "code", ae.Code, "param", ae.Param)
	}
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	body := map[string]any{
		"code":       ae.Code,
		"message":    ae.Message,
		"param":      nullable(ae.Param),
		"details":    ae.Details,
		"request_id": nullable(w.Header().Get("Request-Id")),
	}
	writeJSON(w, ae.Status, map[string]any{"error": body})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
