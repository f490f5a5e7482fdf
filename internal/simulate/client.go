package simulate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"time"
)

// maxResponseBytes caps how much of a response body is read, because API
// responses are small JSON objects.
const maxResponseBytes = 1 << 20

// Backoff bounds between attempts when the server sends no Retry-After.
const (
	backoffBase = 200 * time.Millisecond
	backoffMax  = 10 * time.Second
)

// StepError is the final failure of one step after its retries.
type StepError struct {
	Step string
	// Kind classifies the failure: the API error code when the response
	// carried one (unauthorized, checksum_mismatch, ...), "http_NNN" for a
	// status without one, "transport", "timeout", "bad_response" (a 2xx
	// body that is not the expected JSON), "sha256_differs" or "canceled".
	Kind    string
	Status  int
	Message string
}

func (e *StepError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s: HTTP %d %s: %s", e.Step, e.Status, e.Kind, e.Message)
	}
	return fmt.Sprintf("%s: %s: %s", e.Step, e.Kind, e.Message)
}

// call is one logical API request, sent again on retriable failures.
type call struct {
	step   string
	method string
	url    string
	token  string
	// idempotencyKey is sent on every attempt, so a retried POST whose
	// first response was lost is replayed instead of run twice.
	idempotencyKey string
	body           any
	header         map[string]string
	// file, when set, is the request body, streamed from disk.
	file *audioFile
	// out receives the decoded JSON of a 2xx response.
	out any
}

// client sends calls with retries and records attempts in stats.
type client struct {
	http           *http.Client
	retries        int
	attemptTimeout time.Duration
	stats          *collector
	log            *slog.Logger
}

// do sends c until it succeeds, fails with a non-retriable error, or runs
// out of retries, and records its latency (first attempt to success,
// including backoff) under c.step.
func (cl *client) do(ctx context.Context, c call) error {
	var payload []byte
	if c.body != nil {
		var err error
		if payload, err = json.Marshal(c.body); err != nil {
			return fmt.Errorf("%s: encode request: %w", c.step, err)
		}
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		wait, err := cl.attempt(ctx, c, payload)
		if err == nil {
			cl.stats.latency(c.step, time.Since(start))
			return nil
		}
		var se *StepError
		if !errors.As(err, &se) {
			return err
		}
		if se.Kind == "canceled" {
			return se
		}
		cl.stats.fault(c.step, se.Kind)
		if wait < 0 || attempt >= cl.retries {
			return se
		}
		if wait == 0 {
			wait = backoff(attempt)
		}
		cl.stats.retry()
		cl.log.Debug("RequestRetried", "step", c.step, "kind", se.Kind, "status", se.Status,
			"attempt", attempt+1, "wait", wait.String())
		select {
		case <-ctx.Done():
			return &StepError{Step: c.step, Kind: "canceled", Message: ctx.Err().Error()}
		case <-time.After(wait):
		}
	}
}

// attempt sends c once. On failure it returns a *StepError and how long
// to wait before the next attempt: 0 for the default backoff, a positive
// Retry-After, or -1 when the failure is not worth retrying.
func (cl *client) attempt(ctx context.Context, c call, payload []byte) (time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, cl.attemptTimeout)
	defer cancel()
	req, closeBody, err := newRequest(actx, c, payload)
	if err != nil {
		return -1, err
	}
	defer closeBody()

	resp, err := cl.http.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return -1, &StepError{Step: c.step, Kind: "canceled", Message: ctx.Err().Error()}
		case actx.Err() != nil:
			return 0, &StepError{Step: c.step, Kind: "timeout",
				Message: fmt.Sprintf("attempt timed out after %s", cl.attemptTimeout)}
		}
		return 0, &StepError{Step: c.step, Kind: "transport", Message: err.Error()}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		if ctx.Err() != nil {
			return -1, &StepError{Step: c.step, Kind: "canceled", Message: ctx.Err().Error()}
		}
		return 0, &StepError{Step: c.step, Kind: "transport", Status: resp.StatusCode,
			Message: "read response: " + err.Error()}
	}

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if c.out == nil {
			return 0, nil
		}
		if err := json.Unmarshal(raw, c.out); err != nil {
			// A cut or garbled body is a transport fault: retrying is
			// safe because the request carries an Idempotency-Key.
			return 0, &StepError{Step: c.step, Kind: "bad_response", Status: resp.StatusCode,
				Message: "decode response: " + err.Error()}
		}
		return 0, nil
	}
	return classify(c.step, resp, raw)
}

// newRequest builds one attempt's request. A file body is opened afresh
// for every attempt, so a retry sends the file from its first byte.
func newRequest(ctx context.Context, c call, payload []byte) (*http.Request, func(), error) {
	var body io.Reader
	closeBody := func() {}
	if c.file != nil {
		f, err := os.Open(c.file.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: open %s: %w", c.step, c.file.Path, err)
		}
		body = f
		closeBody = func() { f.Close() }
	} else if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	if err != nil {
		closeBody()
		return nil, nil, fmt.Errorf("%s: build request for %s: %w", c.step, c.url, err)
	}
	if c.file != nil {
		// The transport streams an *os.File body with the declared length
		// and never keeps the whole file in memory.
		req.ContentLength = c.file.Size
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", c.idempotencyKey)
	}
	for k, v := range c.header {
		if http.CanonicalHeaderKey(k) == "Content-Length" || http.CanonicalHeaderKey(k) == "Host" {
			continue
		}
		req.Header.Set(k, v)
	}
	return req, closeBody, nil
}

// classify turns a non-2xx response into a StepError and the wait before a
// retry. A 5xx, 425 upload_incomplete, 429 and 409 idempotency_key_in_use
// are retried. Any other status is final.
func classify(step string, resp *http.Response, raw []byte) (time.Duration, error) {
	var apiErr struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &apiErr)
	se := &StepError{Step: step, Status: resp.StatusCode, Kind: apiErr.Error.Code,
		Message: apiErr.Error.Message}
	if se.Kind == "" {
		se.Kind = "http_" + strconv.Itoa(resp.StatusCode)
	}
	if se.Message == "" {
		se.Message = http.StatusText(resp.StatusCode)
	}

	retryAfter := parseRetryAfter(resp.Header.Get("Retry-After"))
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooEarly,
		resp.StatusCode == http.StatusTooManyRequests:
		return retryAfter, se
	case resp.StatusCode == http.StatusConflict && se.Kind == "idempotency_key_in_use":
		return retryAfter, se
	}
	return -1, se
}

// parseRetryAfter reads a Retry-After header in seconds or as an HTTP
// date; it returns 0 when the header is absent or unreadable.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		// Jitter keeps devices given the same Retry-After from returning
		// in one burst.
		return time.Duration(n)*time.Second + mathrand.N(250*time.Millisecond) + time.Millisecond
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return 0
}

// backoff returns the wait before retry number attempt+1: a random time
// between half and all of backoffBase doubled per attempt, capped at
// backoffMax.
func backoff(attempt int) time.Duration {
	ceiling := backoffMax
	if attempt < 16 {
		ceiling = min(backoffBase<<attempt, backoffMax)
	}
	return ceiling/2 + mathrand.N(ceiling/2+1)
}

// newKey returns a random Idempotency-Key.
func newKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // Since Go 1.24, crypto/rand.Read never returns an error.
	return hex.EncodeToString(b)
}
