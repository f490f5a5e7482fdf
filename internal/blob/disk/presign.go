package disk

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/botaserver/bota/internal/blob"
)

// UploadsPath is the path under which Handler serves objects; signed URLs
// are PublicURL + UploadsPath + key.
const UploadsPath = "/uploads/"

// PresignPut returns a URL on UploadsPath that accepts one PUT of exactly
// opts.ContentLength bytes with Content-Type opts.ContentType until
// opts.Expires.
func (s *Store) PresignPut(_ context.Context, key string, opts blob.PutOptions) (blob.SignedURL, error) {
	if err := validateKey(key); err != nil {
		return blob.SignedURL{}, fmt.Errorf("disk: presign put %q: %w", key, err)
	}
	if err := validateContentType(opts.ContentType); err != nil {
		return blob.SignedURL{}, fmt.Errorf("disk: presign put %q: %w", key, err)
	}
	if opts.ContentLength < 0 || opts.ContentLength > s.maxSize {
		return blob.SignedURL{}, fmt.Errorf("disk: presign put %q: content length %d is outside 0 to %d",
			key, opts.ContentLength, s.maxSize)
	}
	if err := checkExpiry(opts.Expires); err != nil {
		return blob.SignedURL{}, fmt.Errorf("disk: presign put %q: %w", key, err)
	}

	sig := signature{
		kind:        kindObject,
		method:      "PUT",
		key:         key,
		contentType: opts.ContentType,
		size:        opts.ContentLength,
		expires:     opts.Expires.Unix(),
	}
	q := url.Values{}
	q.Set(paramExpires, strconv.FormatInt(sig.expires, 10))
	q.Set(paramContentType, sig.contentType)
	q.Set(paramContentLength, strconv.FormatInt(sig.size, 10))
	q.Set(paramSignature, sig.encode(s.secret))
	return blob.SignedURL{
		URL:     s.publicURL + UploadsPath + key + "?" + q.Encode(),
		Headers: map[string]string{"Content-Type": opts.ContentType},
		Expires: time.Unix(sig.expires, 0).UTC(),
	}, nil
}

// PresignGet returns a URL on UploadsPath that serves key (GET or HEAD)
// until expires.
func (s *Store) PresignGet(_ context.Context, key string, expires time.Time) (blob.SignedURL, error) {
	if err := validateKey(key); err != nil {
		return blob.SignedURL{}, fmt.Errorf("disk: presign get %q: %w", key, err)
	}
	if err := checkExpiry(expires); err != nil {
		return blob.SignedURL{}, fmt.Errorf("disk: presign get %q: %w", key, err)
	}
	sig := signature{kind: kindObject, method: "GET", key: key, expires: expires.Unix()}
	q := url.Values{}
	q.Set(paramExpires, strconv.FormatInt(sig.expires, 10))
	q.Set(paramSignature, sig.encode(s.secret))
	return blob.SignedURL{
		URL:     s.publicURL + UploadsPath + key + "?" + q.Encode(),
		Headers: map[string]string{},
		Expires: time.Unix(sig.expires, 0).UTC(),
	}, nil
}

// PresignPutPrefix returns a URL template whose path is
// UploadsPath + prefix + placeholder + suffix. Replacing placeholder with
// a decimal number from 1 to MaxPrefixNumber, without leading zeros, gives
// a URL that accepts PUTs of at most maxSize bytes of contentType until
// expires, as often as the client likes, unless the prefix is sealed.
func (s *Store) PresignPutPrefix(_ context.Context, prefix, placeholder, suffix, contentType string,
	maxSize int64, expires time.Time) (blob.SignedURL, error) {
	// Any one-byte value must give a valid key; this also checks prefix
	// and suffix for unsafe bytes.
	if err := validateKey(prefix + "0" + suffix); err != nil {
		return blob.SignedURL{}, fmt.Errorf("disk: presign prefix %q + %q: %w", prefix, suffix, err)
	}
	if err := validatePlaceholder(placeholder); err != nil {
		return blob.SignedURL{}, fmt.Errorf("disk: presign prefix %q: %w", prefix, err)
	}
	if err := validateContentType(contentType); err != nil {
		return blob.SignedURL{}, fmt.Errorf("disk: presign prefix %q: %w", prefix, err)
	}
	if maxSize <= 0 || maxSize > s.maxSize {
		return blob.SignedURL{}, fmt.Errorf("disk: presign prefix %q: max size %d is outside 1 to %d",
			prefix, maxSize, s.maxSize)
	}
	if err := checkExpiry(expires); err != nil {
		return blob.SignedURL{}, fmt.Errorf("disk: presign prefix %q: %w", prefix, err)
	}

	sig := signature{
		kind:        kindPrefix,
		method:      "PUT",
		key:         prefix,
		suffix:      suffix,
		contentType: contentType,
		size:        maxSize,
		expires:     expires.Unix(),
	}
	q := url.Values{}
	q.Set(paramExpires, strconv.FormatInt(sig.expires, 10))
	q.Set(paramContentType, contentType)
	q.Set(paramPrefix, prefix)
	q.Set(paramSuffix, suffix)
	q.Set(paramMaxSize, strconv.FormatInt(maxSize, 10))
	q.Set(paramSignature, sig.encode(s.secret))
	// The placeholder is written as it is, not escaped, so that the client
	// finds it by plain string replacement.
	return blob.SignedURL{
		URL:     s.publicURL + UploadsPath + prefix + placeholder + suffix + "?" + q.Encode(),
		Headers: map[string]string{"Content-Type": contentType},
		Expires: time.Unix(sig.expires, 0).UTC(),
	}, nil
}

// validatePlaceholder accepts a placeholder that can stand in a URL path
// unescaped and cannot be mistaken for a path, query or fragment delimiter.
func validatePlaceholder(p string) error {
	if p == "" {
		return errors.New("placeholder is empty")
	}
	if strings.ContainsAny(p, "/?#% ") {
		return fmt.Errorf("placeholder %q contains one of '/', '?', '#', '%%' or space", p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x21 || p[i] > 0x7e {
			return fmt.Errorf("placeholder %q contains a byte outside printable ASCII", p)
		}
	}
	return nil
}

func checkExpiry(expires time.Time) error {
	if !expires.After(time.Now()) {
		return fmt.Errorf("expiry %s is not in the future", expires.UTC().Format(time.RFC3339))
	}
	return nil
}
