package speech

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryAfterError carries the delay a hosted service asked for in a
// Retry-After header. It sits in Error.Err of a rate-limited failure.
type RetryAfterError struct {
	Delay time.Duration
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s", e.Delay)
}

// RetryAfter returns the delay a service asked for before the next attempt,
// if err carries one.
func RetryAfter(err error) (time.Duration, bool) {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.Delay, true
	}
	return 0, false
}

// HTTPError maps an unsuccessful reply from a hosted engine to an Error.
// Rate limits (429), timeouts (408) and server errors (5xx) are retryable;
// other replies are not. detail is the service's own error message.
func HTTPError(provider string, resp *http.Response, detail string) *Error {
	status := resp.StatusCode
	msg := fmt.Sprintf("%s replied %d %s", provider, status, http.StatusText(status))
	if detail = strings.TrimSpace(detail); detail != "" {
		msg += ": " + detail
	}
	e := &Error{Code: CodeProcessingError, Message: msg}
	switch {
	case status == http.StatusTooManyRequests:
		e.Retryable = true
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			e.Err = &RetryAfterError{Delay: d}
		}
	case status == http.StatusRequestTimeout || status >= 500:
		e.Retryable = true
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Message = fmt.Sprintf("%s rejected the API key (%d): check its configuration",
			provider, status)
		if detail != "" {
			e.Message += ": " + detail
		}
	}
	return e
}

// TransportError wraps a failed request to a hosted engine (connection
// refused, reset, timeout, cancelled context) as a retryable Error.
func TransportError(provider string, err error) *Error {
	return &Error{Code: CodeProcessingError, Retryable: true,
		Message: fmt.Sprintf("request to %s failed", provider), Err: err}
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}

// Canceled reports whether err comes from a cancelled or expired context.
func Canceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// BaseLanguage returns the lowercased primary subtag of a language tag
// ("en-US" → "en", "pt_BR" → "pt").
func BaseLanguage(tag string) string {
	tag = strings.ToLower(strings.TrimSpace(tag))
	if i := strings.IndexAny(tag, "-_"); i >= 0 {
		tag = tag[:i]
	}
	return tag
}
