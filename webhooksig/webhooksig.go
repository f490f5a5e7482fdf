// Package webhooksig signs and verifies Bota webhook deliveries.
//
// Every delivery is an HTTP POST whose X-Bota-Signature header contains one or
// more space-separated entries of the form "v1=<hex>". Each hex value is the
// lowercase HMAC-SHA256 of
//
//	timestamp + "." + raw body
//
// keyed with the endpoint's signing secret exactly as issued (the whole
// string, "whsec_" prefix included, as UTF-8 bytes). The timestamp is the
// decimal unix time in seconds sent in X-Bota-Timestamp. While a secret is
// being rotated with an overlap, the header carries one entry per secret,
// newest first, so a receiver holding either secret accepts the delivery.
//
// Receivers should verify the raw bytes before parsing any JSON, and reject
// deliveries whose timestamp is more than DefaultTolerance away from their
// clock, so that a captured request cannot be replayed later.
package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of a webhook delivery.
const (
	SignatureHeader = "X-Bota-Signature"
	TimestampHeader = "X-Bota-Timestamp"
	EventIDHeader   = "X-Bota-Event-Id"
)

// DefaultTolerance is the maximum distance between a delivery's timestamp
// and the receiver's clock, in either direction.
const DefaultTolerance = 300 * time.Second

// MaxBodyBytes is the largest body VerifyRequest reads. Bota keeps event
// bodies well below it.
const MaxBodyBytes = 1 << 20

// signaturePrefix marks the version of the signature scheme in each entry.
const signaturePrefix = "v1="

// Errors returned by Verify and VerifyRequest, wrapped with details. Test
// for them with errors.Is.
var (
	// ErrMissingHeader means X-Bota-Signature or X-Bota-Timestamp is absent.
	ErrMissingHeader = errors.New("webhooksig: missing header")
	// ErrBadTimestamp means X-Bota-Timestamp is not exactly 10 decimal digits
	// or appears more than once.
	ErrBadTimestamp = errors.New("webhooksig: invalid timestamp")
	// ErrStale means the signature is valid but the timestamp is further
	// from the receiver's clock than the tolerance, in the past or future.
	ErrStale = errors.New("webhooksig: timestamp outside tolerance")
	// ErrNoMatch means no v1 entry of X-Bota-Signature matches the body.
	ErrNoMatch = errors.New("webhooksig: no matching signature")
	// ErrBodyTooLarge means the request body exceeds MaxBodyBytes.
	ErrBodyTooLarge = errors.New("webhooksig: body too large")
)

// Sign returns the lowercase hex HMAC-SHA256 of the timestamp's unix seconds,
// a dot and body, keyed with secret.
func Sign(secret string, timestamp time.Time, body []byte) string {
	return hex.EncodeToString(mac(secret, strconv.FormatInt(timestamp.Unix(), 10), body))
}

// Header returns the X-Bota-Signature value for body: one "v1=<hex>" entry
// per secret, in the order given and separated by single spaces. Bota lists
// the newest secret first. Header returns "" when secrets is empty.
func Header(secrets []string, ts time.Time, body []byte) string {
	entries := make([]string, 0, len(secrets))
	for _, secret := range secrets {
		entries = append(entries, signaturePrefix+Sign(secret, ts, body))
	}
	return strings.Join(entries, " ")
}

// Verify checks that header carries a v1 signature of body made with secret
// and that its timestamp lies within tolerance of now. A tolerance of zero or
// less selects DefaultTolerance. Entries with another version prefix are
// ignored. The signature is checked before the timestamp's age, so ErrStale
// means an authentic delivery that arrived too late or too early.
func Verify(secret string, header http.Header, body []byte, now time.Time,
	tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}

	timestamps := header.Values(TimestampHeader)
	if len(timestamps) == 0 {
		return fmt.Errorf("%w: %s", ErrMissingHeader, TimestampHeader)
	}
	signatures := header.Values(SignatureHeader)
	if len(signatures) == 0 {
		return fmt.Errorf("%w: %s", ErrMissingHeader, SignatureHeader)
	}
	if len(timestamps) > 1 {
		return fmt.Errorf("%w: %s appears %d times", ErrBadTimestamp, TimestampHeader,
			len(timestamps))
	}
	timestamp := timestamps[0]
	unix, err := parseTimestamp(timestamp)
	if err != nil {
		return err
	}

	expected := mac(secret, timestamp, body)
	if !matchesAny(expected, signatures) {
		return ErrNoMatch
	}

	age := now.Sub(time.Unix(unix, 0))
	if age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: timestamp %s is %s from now, tolerance %s", ErrStale,
			timestamp, age.Round(time.Second), tolerance)
	}
	return nil
}

// VerifyRequest reads r's body, at most MaxBodyBytes, and verifies it with
// Verify against the current time. It returns the body only when the
// delivery is authentic. It consumes r.Body but does not close it, because
// the http.Server closes request bodies itself.
func VerifyRequest(secret string, r *http.Request, tolerance time.Duration) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("webhooksig: read body: %w", err)
	}
	if len(body) > MaxBodyBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, MaxBodyBytes)
	}
	if err := Verify(secret, r.Header, body, time.Now(), tolerance); err != nil {
		return nil, err
	}
	return body, nil
}

func mac(secret, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(timestamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// parseTimestamp accepts exactly 10 ASCII digits. strconv.ParseInt alone
// would also accept signs and other lengths, which Bota never sends.
func parseTimestamp(s string) (int64, error) {
	if len(s) != 10 {
		return 0, fmt.Errorf("%w: %q is not 10 digits", ErrBadTimestamp, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: %q is not 10 digits", ErrBadTimestamp, s)
		}
	}
	unix, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadTimestamp, err)
	}
	return unix, nil
}

// matchesAny reports whether any v1 entry in the header values equals
// expected. Each comparison is constant-time, so the time taken does not
// reveal how many leading bytes of a forged signature are right.
func matchesAny(expected []byte, values []string) bool {
	matched := false
	for _, value := range values {
		for _, entry := range strings.Fields(value) {
			hexSig, ok := strings.CutPrefix(entry, signaturePrefix)
			if !ok {
				continue
			}
			sig, err := hex.DecodeString(hexSig)
			if err != nil {
				continue
			}
			if hmac.Equal(expected, sig) {
				matched = true
			}
		}
	}
	return matched
}
