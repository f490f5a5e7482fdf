// Package ids makes resource ids and secrets.
//
// An id is a prefix, an underscore and 24 base62 characters (about 143 bits),
// because clients validate ids with <prefix>_[A-Za-z0-9]{1,64}. A secret is a
// prefix and 40 base62 characters (about 238 bits).
package ids

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Prefixes of resource ids.
const (
	Project       = "proj"
	APIKey        = "key"
	EndUser       = "eu"
	Device        = "dev"
	DeviceToken   = "dtk"
	Recording     = "rec"
	Media         = "med"
	Transcription = "txn"
	Event         = "evt"
	Request       = "req"
	UploadToken   = "upt"
	Webhook       = "we"
	Delivery      = "whd"
	Command       = "cmd"
)

// New returns a fresh id with the given prefix.
func New(prefix string) string {
	return prefix + "_" + random(24)
}

// NewSecret returns a fresh secret that starts with prefix, which includes
// its own separator (for example "sk_test_" or "dtok_").
func NewSecret(prefix string) string {
	return prefix + random(40)
}

// Valid reports whether id has the prefix and 1 to 64 base62 characters.
func Valid(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix+"_")
	if !ok || len(rest) == 0 || len(rest) > 64 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(alphabet, rest[i]) < 0 {
			return false
		}
	}
	return true
}

// Hash returns the hex SHA-256 of a secret. Secrets carry at least 192 bits
// of randomness, so a fast unsalted hash is enough to make a stolen table
// useless while still allowing lookup by hash.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func random(n int) string {
	// Rejection sampling keeps every character equally likely.
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			panic("ids: crypto/rand failed: " + err.Error())
		}
		for _, b := range buf {
			if b >= 248 { // 248 = 4*62
				continue
			}
			out = append(out, alphabet[b%62])
			if len(out) == n {
				break
			}
		}
	}
	return string(out)
}
