// Package auth turns a bearer credential into the principal a request acts
// as: its project, mode, scopes and, for device and upload tokens, the one
// device or recording it may touch.
package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

// Kinds of credential.
const (
	KindKey         = "key"
	KindDevice      = "device"
	KindUploadToken = "upload_token"
)

// Scopes a restricted key may carry. Secret keys hold every scope.
var Scopes = []string{
	"recordings:read", "recordings:write",
	"transcriptions:read", "transcriptions:write",
	"end_users:read", "end_users:write",
	"devices:read", "devices:write",
	"summaries:read", "summaries:write",
	"webhooks:read", "webhooks:write",
	"config:read", "config:write",
	"ask:read", "ask:write",
}

// ValidScope reports whether s is a known scope.
func ValidScope(s string) bool { return slices.Contains(Scopes, s) }

// Principal is who a request acts as.
type Principal struct {
	Kind string
	model.Tenant
	// KeyID is the api key id, the device token id or the upload token id.
	KeyID      string
	Restricted bool
	Scopes     []string
	// DeviceID is the device of a device token.
	DeviceID string
	// DeviceToken is the token record of a device credential.
	DeviceToken *model.DeviceToken
	// RecordingID is the recording of an upload token.
	RecordingID string
}

// HasScope reports whether the principal holds scope. Only API keys hold
// scopes.
func (p *Principal) HasScope(scope string) bool {
	if p.Kind != KindKey {
		return false
	}
	return !p.Restricted || slices.Contains(p.Scopes, scope)
}

// ErrInvalid is returned for a credential that is unknown, revoked,
// expired or malformed.
var ErrInvalid = errors.New("invalid credential")

// UploadTokenLookup finds an upload token by the hash of its secret. The
// recordings code provides it.
type UploadTokenLookup func(ctx context.Context, hash string) (tokenID string, t model.Tenant, recordingID string, err error)

// Authenticator checks credentials against the store.
type Authenticator struct {
	Store       *store.Store
	UploadToken UploadTokenLookup
}

// Authenticate returns the principal of a bearer secret.
func (a *Authenticator) Authenticate(ctx context.Context, secret string) (*Principal, error) {
	if len(secret) > 256 || secret == "" {
		return nil, ErrInvalid
	}
	hash := ids.Hash(secret)
	switch {
	case hasAnyPrefix(secret, "sk_test_", "sk_live_", "rk_test_", "rk_live_"):
		k, err := a.Store.APIKeyBySecretHash(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrInvalid
		}
		if err != nil {
			return nil, fmt.Errorf("look up api key: %w", err)
		}
		// The prefix must agree with the stored mode and kind, so a key
		// can never act in a mode its prefix does not show.
		wantPrefix := KeyPrefix(k.Restricted, k.Mode)
		if k.RevokedAt != nil || subtle.ConstantTimeCompare([]byte(secret[:len(wantPrefix)]), []byte(wantPrefix)) != 1 {
			return nil, ErrInvalid
		}
		if k.LastUsedAt == nil || time.Since(*k.LastUsedAt) > time.Minute {
			// Recorded at most once a minute per key, to keep writes off
			// the request path.
			if err := a.Store.TouchAPIKey(ctx, k.ID); err != nil {
				return nil, fmt.Errorf("record api key use: %w", err)
			}
		}
		return &Principal{Kind: KindKey, Tenant: model.Tenant{ProjectID: k.ProjectID, Mode: k.Mode},
			KeyID: k.ID, Restricted: k.Restricted, Scopes: k.Scopes}, nil
	case strings.HasPrefix(secret, "dtok_"):
		tok, err := a.Store.DeviceTokenByHash(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrInvalid
		}
		if err != nil {
			return nil, fmt.Errorf("look up device token: %w", err)
		}
		return &Principal{Kind: KindDevice, Tenant: tok.Tenant, KeyID: tok.ID, DeviceID: tok.DeviceID,
			DeviceToken: tok}, nil
	case strings.HasPrefix(secret, "up_"):
		if a.UploadToken == nil {
			return nil, ErrInvalid
		}
		id, t, rec, err := a.UploadToken(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrInvalid
		}
		if err != nil {
			return nil, fmt.Errorf("look up upload token: %w", err)
		}
		return &Principal{Kind: KindUploadToken, Tenant: t, KeyID: id, RecordingID: rec}, nil
	}
	return nil, ErrInvalid
}

// KeyPrefix returns the secret prefix of a key kind and mode.
func KeyPrefix(restricted bool, mode string) string {
	if restricted {
		return "rk_" + mode + "_"
	}
	return "sk_" + mode + "_"
}

// NewAPIKey makes a key record and its secret. Scopes make it restricted.
func NewAPIKey(projectID, mode, name string, scopes []string) (*model.APIKey, string) {
	restricted := len(scopes) > 0
	secret := ids.NewSecret(KeyPrefix(restricted, mode))
	k := &model.APIKey{
		ID:         ids.New(ids.APIKey),
		ProjectID:  projectID,
		Mode:       mode,
		Restricted: restricted,
		Scopes:     scopes,
		Hint:       secret[:len(KeyPrefix(restricted, mode))+4] + "...",
		Name:       name,
		CreatedAt:  time.Now(),
	}
	return k, secret
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
