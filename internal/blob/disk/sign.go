package disk

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// Query parameters of a signed URL. Every value but the signature is also
// an input of the signature, so none can be changed without invalidating it.
const (
	paramExpires       = "expires"
	paramContentType   = "content_type"
	paramContentLength = "content_length"
	paramPrefix        = "prefix"
	paramSuffix        = "suffix"
	paramMaxSize       = "max_size"
	paramSignature     = "signature"
)

// Kinds of signature. The kind is signed too, so an object signature can
// never be replayed as a prefix signature or the reverse.
const (
	kindObject = "object"
	kindPrefix = "prefix"
)

// signature holds the bound values of one signed URL.
type signature struct {
	kind   string
	method string
	// key is the object key (kindObject) or the key prefix (kindPrefix).
	key         string
	suffix      string
	contentType string
	// size is the exact length (kindObject, PUT), the maximum length
	// (kindPrefix) or 0 (GET).
	size    int64
	expires int64
}

// mac computes the HMAC-SHA256 of sig under secret. Each field is written
// with its length in front, so no two different field lists produce the
// same input.
func (sig signature) mac(secret []byte) []byte {
	h := hmac.New(sha256.New, secret)
	fields := []string{
		"bota-blob-v1",
		sig.kind,
		sig.method,
		sig.key,
		sig.suffix,
		sig.contentType,
		strconv.FormatInt(sig.size, 10),
		strconv.FormatInt(sig.expires, 10),
	}
	for _, f := range fields {
		// Writes to a hash.Hash never return an error.
		_, _ = h.Write([]byte(strconv.Itoa(len(f)) + ":" + f))
	}
	return h.Sum(nil)
}

func (sig signature) encode(secret []byte) string {
	return base64.RawURLEncoding.EncodeToString(sig.mac(secret))
}

// verify reports whether encoded is the signature of sig, in constant time.
func (sig signature) verify(secret []byte, encoded string) bool {
	got, err := base64.RawURLEncoding.Strict().DecodeString(encoded)
	if err != nil {
		return false
	}
	return hmac.Equal(got, sig.mac(secret))
}
