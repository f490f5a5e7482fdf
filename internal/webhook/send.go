package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/botaserver/bota/webhooksig"
)

// SnippetBytes is the maximum length of Attempt.ResponseSnippet.
const SnippetBytes = 1024

// drainBytes is how much of a response body Send reads past the snippet so
// the connection can be reused. Larger bodies are cut off and the
// connection is closed instead.
const drainBytes = 64 << 10

// userAgent identifies deliveries in receivers' logs.
const userAgent = "Bota-Webhooks/1"

// Delivery is one attempt's request: an event body and where to send it.
type Delivery struct {
	URL     string
	EventID string // must equal the body's "id"; sent as X-Bota-Event-Id
	Body    []byte // the event envelope JSON, sent byte for byte
	// Secrets are the endpoint's signing secrets, newest first. During a
	// rotation with overlap there are two, otherwise one.
	Secrets []string
	// Now is the signing time sent in X-Bota-Timestamp. Zero means the time
	// Send is called.
	Now time.Time
}

// Attempt is the outcome of one delivery attempt, as stored and shown in
// the endpoint's delivery log.
type Attempt struct {
	StatusCode      int           // HTTP status, 0 when no response arrived
	Duration        time.Duration // from sending the request to reading the snippet
	Error           string        // cause of the failure, "" on success
	ResponseSnippet string        // first SnippetBytes of the response body, valid UTF-8
}

// Succeeded reports whether the receiver responded with a 2xx status.
func (a Attempt) Succeeded() bool {
	return a.Error == "" && a.StatusCode >= 200 && a.StatusCode <= 299
}

// Send POSTs d.Body to d.URL with the Bota signature headers and returns
// the outcome. A 2xx response is a success. Any other status, including a 3xx
// (the client from NewClient does not follow redirects), and any transport
// error is a failure described in Attempt.Error. Send never sends an
// unsigned body, and it checks that d.EventID equals the body's id.
func Send(ctx context.Context, client *http.Client, d Delivery) Attempt {
	req, err := newRequest(ctx, d)
	if err != nil {
		return Attempt{Error: err.Error()}
	}

	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return Attempt{Duration: time.Since(start), Error: describeTransportError(err)}
	}
	snippet := readSnippet(resp.Body)
	attempt := Attempt{
		StatusCode:      resp.StatusCode,
		Duration:        time.Since(start),
		ResponseSnippet: snippet,
	}

	switch {
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		attempt.Error = fmt.Sprintf("HTTP %d: redirects are not followed, "+
			"so register the final URL", resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		attempt.Error = fmt.Sprintf("HTTP %d: expected a 2xx status", resp.StatusCode)
	}
	return attempt
}

func newRequest(ctx context.Context, d Delivery) (*http.Request, error) {
	if len(d.Secrets) == 0 {
		return nil, errors.New("no signing secret: an unsigned delivery is never sent")
	}
	if d.EventID == "" {
		return nil, errors.New("event id is missing")
	}
	var envelope struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(d.Body, &envelope); err != nil {
		return nil, fmt.Errorf("event body is not a JSON object: %w", err)
	}
	if envelope.ID != d.EventID {
		return nil, fmt.Errorf("event id %q does not match the body's id %q",
			d.EventID, envelope.ID)
	}

	now := d.Now
	if now.IsZero() {
		now = time.Now()
	}
	timestamp := strconv.FormatInt(now.Unix(), 10)
	// Receivers accept exactly 10 digits, which covers 2001-09-09 to 2286.
	if len(timestamp) != 10 || now.Unix() < 0 {
		return nil, fmt.Errorf("signing time %s is outside the 10-digit unix range",
			now.UTC().Format(time.RFC3339))
	}

	// bytes.Reader gives the request a known ContentLength, so the body goes
	// with Content-Length and never chunked.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL,
		bytes.NewReader(d.Body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(webhooksig.TimestampHeader, timestamp)
	req.Header.Set(webhooksig.SignatureHeader, webhooksig.Header(d.Secrets, now, d.Body))
	req.Header.Set(webhooksig.EventIDHeader, d.EventID)
	return req, nil
}

// readSnippet returns the first SnippetBytes of body as valid UTF-8, reads
// on up to drainBytes so the connection can be reused, and closes body.
// Read errors are dropped on purpose: the status code has already decided
// the outcome, and a body that breaks off only shortens the snippet.
func readSnippet(body io.ReadCloser) string {
	buf, err := io.ReadAll(io.LimitReader(body, SnippetBytes))
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, drainBytes))
	}
	_ = body.Close()
	// The limit may cut a multi-byte character, so an incomplete rune at
	// the end is dropped before invalid bytes are replaced.
	for i := 0; i < utf8.UTFMax-1 && len(buf) > 0 && !utf8.Valid(buf); i++ {
		if r, size := utf8.DecodeLastRune(buf); r != utf8.RuneError || size != 1 {
			break
		}
		buf = buf[:len(buf)-1]
	}
	return string(bytes.ToValidUTF8(buf, []byte("\uFFFD")))
}

// describeTransportError returns the cause of a failed request without the
// "Post <url>:" prefix, because an endpoint URL may carry a token in its
// query. For a blocked address it adds how the operator allows them.
func describeTransportError(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		if urlErr.Timeout() {
			return "timed out: " + urlErr.Err.Error()
		}
		err = urlErr.Err
	}
	if errors.Is(err, ErrBlockedAddress) {
		return err.Error() + ", " + privateHint +
			" (the operator can allow them with BOTA_WEBHOOK_ALLOW_PRIVATE=true)"
	}
	return err.Error()
}
