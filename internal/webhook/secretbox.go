package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/botaserver/bota/internal/ids"
)

// SecretPrefix starts every endpoint signing secret.
const SecretPrefix = "whsec_"

// sealedPrefix marks the format of a sealed secret, so that a later format
// (another key or cipher) can be recognised.
const sealedPrefix = "v1:"

// keyLabel separates the sealing key from the other keys derived from the
// same server secret (cursors, signed URLs).
const keyLabel = "bota webhook endpoint secret v1"

// SecretBox seals endpoint signing secrets for storage. Unlike API keys,
// which are stored only as a hash, a signing secret must be read back to
// sign each delivery, so it is encrypted with AES-256-GCM under a key
// derived from the server secret. Each sealed value is bound to its
// endpoint id, so a value copied to another endpoint's row does not open.
// A database dump alone therefore reveals no signing secret.
type SecretBox struct {
	aead cipher.AEAD
}

// NewSecretBox derives the sealing key from the server secret with
// HMAC-SHA256. Every node of a cluster shares the server secret, so each
// opens what another sealed.
func NewSecretBox(serverSecret []byte) (*SecretBox, error) {
	if len(serverSecret) == 0 {
		return nil, errors.New("webhook: server secret is empty")
	}
	mac := hmac.New(sha256.New, serverSecret)
	mac.Write([]byte(keyLabel))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("webhook: sealing key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("webhook: sealing key: %w", err)
	}
	return &SecretBox{aead: aead}, nil
}

// NewSecret returns a fresh signing secret: "whsec_" and 40 base62
// characters (about 238 bits).
func NewSecret() string { return ids.NewSecret(SecretPrefix) }

// Seal encrypts secret for the endpoint with id.
func (b *SecretBox) Seal(endpointID, secret string) (string, error) {
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("webhook: seal secret: %w", err)
	}
	out := b.aead.Seal(nonce, nonce, []byte(secret), []byte(endpointID))
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(out), nil
}

// Open decrypts a value Seal returned for the endpoint with id. It fails
// when the value was sealed for another endpoint or under another server
// secret.
func (b *SecretBox) Open(endpointID, sealed string) (string, error) {
	encoded, ok := strings.CutPrefix(sealed, sealedPrefix)
	if !ok {
		return "", errors.New("webhook: sealed secret has an unknown format")
	}
	raw, err := base64.RawStdEncoding.DecodeString(encoded)
	if err != nil {
		return "", fmt.Errorf("webhook: decode sealed secret: %w", err)
	}
	n := b.aead.NonceSize()
	if len(raw) < n {
		return "", errors.New("webhook: sealed secret is too short")
	}
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(endpointID))
	if err != nil {
		return "", fmt.Errorf("webhook: open sealed secret of %s (was the server secret "+
			"changed?): %w", endpointID, err)
	}
	return string(plain), nil
}
