package api

import (
	"github.com/botaserver/bota/internal/model"
)

func mediaJSON(m *model.Media) map[string]any {
	return map[string]any{
		"id":              m.ID,
		"object":          "media",
		"recording_id":    m.RecordingID,
		"project_id":      m.ProjectID,
		"type":            m.Type,
		"mime_type":       m.MimeType,
		"content_type":    m.MimeType,
		"file_size_bytes": m.FileSizeBytes,
		"status":          m.Status,
		"sha256":          m.SHA256,
		"duration_ms":     m.DurationMs,
		"captured_at":     formatTimePtr(m.CapturedAt),
		"created_at":      formatTime(m.CreatedAt),
		"uploaded_at":     formatTimePtr(m.UploadedAt),
	}
}

// primaryAudio returns the first uploaded audio media, or the first audio
// media when none is uploaded yet.
func primaryAudio(r *model.Recording) *model.Media {
	var first *model.Media
	for _, m := range r.Media {
		if m.Type != "audio" {
			continue
		}
		if m.Status == model.MediaUploaded {
			return m
		}
		if first == nil {
			first = m
		}
	}
	return first
}

func recordingJSON(r *model.Recording) map[string]any {
	media := make([]any, 0, len(r.Media))
	for _, m := range r.Media {
		if m.Status == model.MediaExpired {
			continue
		}
		media = append(media, mediaJSON(m))
	}
	var size, mime any
	if a := primaryAudio(r); a != nil && a.Status == model.MediaUploaded {
		size, mime = a.FileSizeBytes, a.MimeType
	}
	var seconds any
	if r.DurationMs != nil {
		seconds = (*r.DurationMs + 500) / 1000
	}
	return map[string]any{
		"id":                         r.ID,
		"object":                     "recording",
		"project_id":                 r.ProjectID,
		"device_id":                  r.DeviceID,
		"end_user_id":                r.EndUserID,
		"name":                       r.Name,
		"status":                     r.Status,
		"source":                     r.Source,
		"upload_method":              r.UploadMethod,
		"streaming":                  r.Streaming,
		"recorded_at":                formatTimePtr(r.RecordedAt),
		"started_at":                 formatTimePtr(r.StartedAt),
		"ended_at":                   formatTimePtr(r.EndedAt),
		"duration_ms":                r.DurationMs,
		"duration_seconds":           seconds,
		"content_sha256":             r.ContentSHA256,
		"content_sha256_verified_at": formatTimePtr(r.ContentSHA256VerifiedAt),
		"transcription_id":           r.TranscriptionID,
		"media":                      media,
		"file_size_bytes":            size,
		"mime_type":                  mime,
		"uploaded_at":                formatTimePtr(r.UploadedAt),
		"metadata":                   object(r.Metadata),
		"created_at":                 formatTime(r.CreatedAt),
		"updated_at":                 formatTime(r.UpdatedAt),
		"deleted_at":                 nil,
	}
}
