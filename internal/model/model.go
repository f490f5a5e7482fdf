// Package model holds the plain records the store reads and writes.
package model

import (
	"encoding/json"
	"time"
)

// Modes of a project: data of one mode is invisible to the other.
const (
	ModeTest = "test"
	ModeLive = "live"
)

// Project is the isolation boundary of all data.
type Project struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// APIKey is a secret (sk_) or restricted (rk_) key. Only its hash is stored.
type APIKey struct {
	ID         string
	ProjectID  string
	Mode       string
	Restricted bool
	Scopes     []string
	// Hint is the start of the secret, shown in lists so a user can tell
	// keys apart.
	Hint       string
	Name       string
	CreatedAt  time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

// Tenant is the project and mode a request acts in.
type Tenant struct {
	ProjectID string
	Mode      string
}

// EndUser is a customer's user; end users never log in to the server.
type EndUser struct {
	ID string
	Tenant
	ExternalID *string
	Email      *string
	Name       *string
	Metadata   map[string]any
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Device statuses.
const (
	DeviceUnbound = "unbound"
	DeviceBound   = "bound"
)

// Device is a recorder registered in a project.
type Device struct {
	ID string
	Tenant
	SerialNumber      string
	Model             string
	DeviceType        *string
	FirmwareVersion   *string
	Name              *string
	Status            string
	EndUserID         *string
	BoundAt           *time.Time
	BindingGeneration int
	BatteryPercent    *int
	StorageUsedMB     *int
	StorageTotalMB    *int
	SignalStrengthDBM *int
	LastHeartbeatAt   *time.Time
	RecordingState    json.RawMessage // nil until the first heartbeat that reports it
	Metadata          map[string]any
	Settings          map[string]any
	PublicKey         *string
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// DeviceToken is a device's credential. Only its hash is stored.
type DeviceToken struct {
	ID       string
	DeviceID string
	Tenant
	CreatedAt   time.Time
	ExpiresAt   *time.Time
	RevokedAt   *time.Time
	GraceUntil  *time.Time
	ReplacedBy  *string
	FirstUsedAt *time.Time
}

// Recording statuses.
const (
	RecordingPending          = "pending"
	RecordingStreaming        = "streaming"
	RecordingStitching        = "stitching"
	RecordingUploaded         = "uploaded"
	RecordingProcessing       = "processing"
	RecordingCompleted        = "completed"
	RecordingFailed           = "failed"
	RecordingIntegrityFailure = "integrity_failure"
)

// Recording is one captured conversation and its media files.
type Recording struct {
	ID string
	Tenant
	DeviceID                *string
	EndUserID               *string
	Name                    *string
	Status                  string
	Source                  string
	UploadMethod            *string
	RecordedAt              *time.Time
	StartedAt               *time.Time
	EndedAt                 *time.Time
	DurationMs              *int64
	ContentSHA256           *string
	ContentSHA256VerifiedAt *time.Time
	UploadedAt              *time.Time
	TranscriptionID         *string
	Streaming               bool
	// StreamState is the JSON of a streaming recording's finalize request
	// and answer.
	StreamState *string
	// CompleteResponse is the body of the first successful
	// upload-complete, replayed by later calls.
	CompleteResponse *string
	Metadata         map[string]any
	CreatedAt        time.Time
	UpdatedAt        time.Time
	Media            []*Media
}

// Media statuses.
const (
	MediaPending  = "pending"
	MediaUploaded = "uploaded"
	MediaExpired  = "expired"
)

// Media is one file of a recording (audio, image or video).
type Media struct {
	ID          string
	RecordingID string
	Tenant
	Type          string
	MimeType      string
	FileSizeBytes *int64
	Status        string
	StorageKey    string
	SHA256        *string
	DurationMs    *int64
	CapturedAt    *time.Time
	URLExpiresAt  time.Time
	CreatedAt     time.Time
	UploadedAt    *time.Time
}

// Transcription statuses.
const (
	TranscriptionPending    = "pending"
	TranscriptionProcessing = "processing"
	TranscriptionCompleted  = "completed"
	TranscriptionFailed     = "failed"
)

// Transcription is one speech-to-text job of a recording and its result.
type Transcription struct {
	ID          string
	RecordingID string
	Tenant
	Status   string
	Language *string
	// Provider is the hosted service asked for; nil means the server's
	// own engine.
	Provider    *string
	Engine      *string
	Diarization bool
	Text        *string
	// Segments is the JSON array of segments.
	Segments     *string
	Confidence   *float64
	WordCount    *int
	DurationMs   *int64
	ErrorCode    *string
	ErrorMessage *string
	Attempts     int
	CreatedAt    time.Time
	UpdatedAt    time.Time
	StartedAt    *time.Time
	CompletedAt  *time.Time
}

// SortKey returns the end user's position in lists: newest first, then id.
func (u *EndUser) SortKey() (time.Time, string) { return u.CreatedAt, u.ID }

// SortKey returns the device's position in lists.
func (d *Device) SortKey() (time.Time, string) { return d.CreatedAt, d.ID }

// SortKey returns the recording's position in lists.
func (r *Recording) SortKey() (time.Time, string) { return r.CreatedAt, r.ID }

// SortKey returns the transcription's position in lists.
func (t *Transcription) SortKey() (time.Time, string) { return t.CreatedAt, t.ID }
