package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/botaserver/bota/internal/audio"
	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/processing"
	"github.com/botaserver/bota/internal/store"
)

// uploadURLLifetime is how long upload and download URLs and upload tokens
// are valid.
const uploadURLLifetime = time.Hour

// contentTypes lists the accepted content types per media type; the first
// is the default.
var contentTypes = map[string][]string{
	"audio": {"audio/opus", "audio/wav", "audio/mpeg", "audio/mp4", "audio/aac", "audio/webm", "audio/ogg", "audio/flac"},
	"image": {"image/jpeg", "image/png"},
	"video": {"video/mp4"},
}

var extensions = map[string]string{
	"audio/opus": "opus", "audio/wav": "wav", "audio/mpeg": "mp3", "audio/mp4": "m4a", "audio/aac": "aac",
	"audio/webm": "webm", "audio/ogg": "ogg", "audio/flac": "flac",
	"image/jpeg": "jpg", "image/png": "png", "video/mp4": "mp4",
}

// contentTypeAliases maps other common spellings onto the accepted types.
var contentTypeAliases = map[string]string{
	"audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/mp3": "audio/mpeg",
	"audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4", "audio/x-flac": "audio/flac",
	"image/jpg": "image/jpeg",
}

var sha256Pattern = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

type uploadURLBody struct {
	Type          optional[string]    `json:"type"`
	ContentType   optional[string]    `json:"content_type"`
	FileSizeBytes optional[int64]     `json:"file_size_bytes"`
	CapturedAt    optional[time.Time] `json:"captured_at"`
}

// mediaType returns the media type and content type a body requests.
// Older clients send only content_type, from which the type follows.
func (b *uploadURLBody) mediaType() (string, string, error) {
	ct := ""
	if v := b.ContentType.ptr(); v != nil {
		mt, _, err := mime.ParseMediaType(*v)
		if err != nil {
			return "", "", errInvalid("content_type", "content_type %q is not a media type.", truncate(*v, 60))
		}
		ct = mt
		if alias, ok := contentTypeAliases[ct]; ok {
			ct = alias
		}
	}
	typ := "audio"
	if v := b.Type.ptr(); v != nil {
		typ = *v
	} else if ct != "" {
		typ, _, _ = strings.Cut(ct, "/")
	}
	allowed, ok := contentTypes[typ]
	if !ok && b.Type.ptr() == nil {
		return "", "", errInvalid("content_type", "content_type %s is not accepted; use an audio, image or video type such as audio/opus.", ct)
	}
	if !ok {
		return "", "", errInvalid("type", "type must be audio, image or video.")
	}
	if ct == "" {
		return typ, allowed[0], nil
	}
	if !slices.Contains(allowed, ct) {
		return "", "", errInvalid("content_type", "content_type %s is not accepted for %s; use one of %s.",
			ct, typ, strings.Join(allowed, ", "))
	}
	return typ, ct, nil
}

func (s *Server) createUploadURL(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body uploadURLBody
	if err := decode(r, &body); err != nil {
		return err
	}
	typ, ct, err := body.mediaType()
	if err != nil {
		return err
	}
	size := body.FileSizeBytes.ptr()
	if size != nil && *size <= 0 {
		return errInvalid("file_size_bytes", "file_size_bytes must be a positive integer.")
	}
	if size != nil && *size > s.cfg.MaxFileSize {
		return errTooLarge("file_size_bytes", "file_size_bytes %d exceeds this server's limit of %d bytes.", *size, s.cfg.MaxFileSize)
	}
	rec, err := s.recordingFromPath(r, p)
	if err != nil {
		return err
	}
	if err := uploadable(rec); err != nil {
		return err
	}
	if len(rec.Media) >= s.cfg.MaxMedia {
		return errConflict("conflict", "", "Recording %s already has %d media files, the most this server accepts.", rec.ID, s.cfg.MaxMedia)
	}

	now := s.store.Now()
	m := &model.Media{
		ID:            ids.New(ids.Media),
		RecordingID:   rec.ID,
		Tenant:        p.Tenant,
		Type:          typ,
		MimeType:      ct,
		FileSizeBytes: size,
		Status:        model.MediaPending,
		CapturedAt:    body.CapturedAt.ptr(),
		URLExpiresAt:  now.Add(uploadURLLifetime),
	}
	m.StorageKey = fmt.Sprintf("%s/%s/%s/%s.%s", p.ProjectID, rec.ID, m.ID, typ, extensions[ct])
	opts := blob.PutOptions{ContentType: ct, Expires: m.URLExpiresAt}
	if size != nil {
		opts.ContentLength = *size
	}
	signed, err := s.blob.PresignPut(r.Context(), m.StorageKey, opts)
	if err != nil {
		return errInternal(err)
	}
	if err := s.store.CreateMedia(r.Context(), m); err != nil {
		return errInternal(err)
	}

	out := map[string]any{
		"media_id":     m.ID,
		"recording_id": rec.ID,
		"type":         typ,
		"upload_url":   signed.URL,
		"method":       http.MethodPut,
		"headers":      signed.Headers,
		"content_type": ct,
		"expires_at":   formatTime(signed.Expires),
		"upload_token": nil,
	}
	if p.Kind == auth.KindKey {
		token, _, err := s.mintUploadToken(r.Context(), p, rec.ID, false)
		if err != nil {
			return errInternal(err)
		}
		out["upload_token"] = token
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// uploadable refuses uploads to a recording that is streamed or already
// uploaded.
func uploadable(rec *model.Recording) error {
	switch rec.Status {
	case model.RecordingPending, model.RecordingIntegrityFailure:
		return nil
	case model.RecordingStreaming, model.RecordingStitching:
		return errConflict("conflict", "", "Recording %s is streamed: upload chunks and call finalize.", rec.ID)
	}
	return errConflict("conflict", "", "Recording %s is already %s; create a new recording for new media.", rec.ID, rec.Status)
}

func (s *Server) mintUploadToken(ctx context.Context, p *auth.Principal, recordingID string, revokeOthers bool) (string, time.Time, error) {
	token := ids.NewSecret("up_")
	_, expires, err := s.store.CreateUploadToken(ctx, p.Tenant, recordingID, hashSecret(token), uploadURLLifetime, revokeOthers)
	return token, expires, err
}

func (s *Server) createUploadToken(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	rec, err := s.recordingFromPath(r, p)
	if err != nil {
		return err
	}
	token, expires, err := s.mintUploadToken(r.Context(), p, rec.ID, false)
	if err != nil {
		return errInternal(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "upload_token", "recording_id": rec.ID, "project_id": p.ProjectID,
		"upload_token": token, "expires_at": formatTime(expires),
	})
	return nil
}

// reissueUploadToken serves replays of responses that carried an upload
// token: a fresh token replaces the lost one.
func (s *Server) reissueUploadToken(r *http.Request, p *auth.Principal, body map[string]any) error {
	recID, _ := body["recording_id"].(string)
	if recID == "" {
		recID = r.PathValue("id")
	}
	if _, ok := body["upload_token"]; !ok || p.Kind != auth.KindKey {
		return nil
	}
	token, expires, err := s.mintUploadToken(r.Context(), p, recID, true)
	if err != nil {
		return errInternal(err)
	}
	body["upload_token"] = token
	if _, ok := body["object"]; ok {
		body["expires_at"] = formatTime(expires)
	}
	return nil
}

type completeBody struct {
	ContentSHA256   optional[string]  `json:"content_sha256"`
	SHA256          optional[string]  `json:"sha256"`
	FileSizeBytes   optional[int64]   `json:"file_size_bytes"`
	DurationSeconds optional[float64] `json:"duration_seconds"`
}

// checkedMedia is the size, digest and duration upload-complete measured
// for one stored object.
type checkedMedia struct {
	media    *model.Media
	size     int64
	sha256   string
	duration *int64
}

func (s *Server) completeUpload(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body completeBody
	if err := decode(r, &body); err != nil {
		return err
	}
	digest := body.ContentSHA256.ptr()
	if digest == nil {
		digest = body.SHA256.ptr()
	}
	if digest != nil && !sha256Pattern.MatchString(*digest) {
		return errInvalid("content_sha256", "content_sha256 must be 64 hexadecimal characters.")
	}
	if v := body.FileSizeBytes.ptr(); v != nil && *v <= 0 {
		return errInvalid("file_size_bytes", "file_size_bytes must be a positive integer.")
	}
	if v := body.DurationSeconds.ptr(); v != nil && *v < 0 {
		return errInvalid("duration_seconds", "duration_seconds must not be negative.")
	}
	rec, err := s.recordingFromPath(r, p)
	if err != nil {
		return err
	}
	if done, err := s.replayComplete(w, rec); done || err != nil {
		return err
	}
	if err := uploadable(rec); err != nil {
		return err
	}

	checked, err := s.checkStoredMedia(r, rec, body.FileSizeBytes.ptr())
	if err != nil {
		return err
	}
	primary := primaryChecked(checked)
	if digest != nil && primary != nil && !strings.EqualFold(*digest, primary.sha256) {
		return s.failIntegrity(r, rec, primary.media, *digest, primary.sha256)
	}

	var out map[string]any
	err = s.store.InTx(r.Context(), func(tx *store.Store) error {
		locked, err := tx.LockRecording(r.Context(), p.Tenant, rec.ID)
		if err != nil {
			return err
		}
		if locked.CompleteResponse != nil {
			// A concurrent complete won, so return its response.
			return json.Unmarshal([]byte(*locked.CompleteResponse), &out)
		}
		out, _, err = s.markUploaded(r.Context(), tx, locked, checked, primary)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Recording "+rec.ID, "id")
	}
	if err != nil {
		return errInternal(err)
	}
	s.sealMedia(r, checked)
	s.afterUpload(r, p, rec.ID)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// sealMedia makes the store reject further PUTs to verified media, so an
// upload URL that is still valid cannot replace bytes whose digest the
// recording now shows. A failure is logged; the media stay uploaded.
func (s *Server) sealMedia(r *http.Request, checked []checkedMedia) {
	sealer, ok := s.blob.(blob.Sealer)
	if !ok {
		return
	}
	for _, c := range checked {
		if err := sealer.Seal(r.Context(), c.media.StorageKey); err != nil {
			loggerFrom(r.Context()).Error("MediaSealFailed", "media_id", c.media.ID, "err", err)
		}
	}
}

// replayComplete returns the body of the first successful upload-complete
// to a repeated one.
func (s *Server) replayComplete(w http.ResponseWriter, rec *model.Recording) (bool, error) {
	if rec.CompleteResponse == nil {
		return false, nil
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(*rec.CompleteResponse), &out); err != nil {
		return false, errInternal(err)
	}
	writeJSON(w, http.StatusOK, out)
	return true, nil
}

// checkStoredMedia checks every pending media object in storage: missing
// objects whose URL is still valid make the client wait (425), expired ones
// are set aside, and sizes must match what was declared. It hashes each
// object and measures audio durations.
func (s *Server) checkStoredMedia(r *http.Request, rec *model.Recording, declaredSize *int64) ([]checkedMedia, error) {
	now := s.store.Now()
	var pending []*model.Media
	for _, m := range rec.Media {
		if m.Status == model.MediaPending || (rec.Status == model.RecordingIntegrityFailure && m.Status == model.MediaUploaded) {
			pending = append(pending, m)
		}
	}
	var checked []checkedMedia
	for _, m := range pending {
		info, err := s.blob.Stat(r.Context(), m.StorageKey)
		if errors.Is(err, blob.ErrNotFound) {
			if now.After(m.URLExpiresAt) {
				m.Status = model.MediaExpired
				if err := s.store.SaveMedia(r.Context(), m); err != nil {
					return nil, errInternal(err)
				}
				continue
			}
			return nil, &apiError{Status: 425, Code: "upload_incomplete", Param: "media", RetryAfter: 2,
				Message: fmt.Sprintf("Media %s is not in storage yet; finish the PUT and retry.", m.ID)}
		}
		if err != nil {
			return nil, errUnavailable("Could not reach media storage; retry later.", err)
		}
		// The size signed at upload-url and the one sent to upload-complete
		// must both match. The latter names the one pending file, so it is
		// checked only when there is one.
		if want := m.FileSizeBytes; want != nil && *want != info.Size {
			return nil, sizeMismatch(m.ID, info.Size, *want)
		}
		if want := declaredSize; want != nil && len(pending) == 1 && *want != info.Size {
			return nil, sizeMismatch(m.ID, info.Size, *want)
		}
		c, err := s.inspectObject(r.Context(), m, info)
		if err != nil {
			return nil, err
		}
		checked = append(checked, c)
	}
	if len(checked) == 0 && !hasUploaded(rec) {
		return nil, errInvalid("media", "Recording %s has no uploaded media; request an upload URL and PUT the file first.", rec.ID)
	}
	return checked, nil
}

func hasUploaded(rec *model.Recording) bool {
	for _, m := range rec.Media {
		if m.Status == model.MediaUploaded {
			return true
		}
	}
	return false
}

// inspectObject hashes a stored object and, for audio, measures its
// duration. A store that hashed the object while writing it and keeps it as
// a local file (the disk store) is read in place. Otherwise the object is
// streamed once through the hash into a temporary file for ffprobe. A file
// that cannot be decoded gets a null duration: the transcription reports it.
func (s *Server) inspectObject(ctx context.Context, m *model.Media, info blob.Info) (checkedMedia, error) {
	c := checkedMedia{media: m, size: info.Size, sha256: info.SHA256}
	if lp, ok := s.blob.(blob.LocalPather); ok && c.sha256 != "" {
		path, err := lp.LocalPath(ctx, m.StorageKey)
		if err != nil {
			return c, errUnavailable("Could not read media from storage; retry later.", err)
		}
		if m.Type == "audio" {
			c.duration = probeDuration(ctx, path)
		}
		return c, nil
	}

	rc, err := s.blob.Open(ctx, m.StorageKey)
	if err != nil {
		return c, errUnavailable("Could not read media from storage; retry later.", err)
	}
	defer rc.Close()
	h := sha256.New()
	var dst io.Writer = h
	var tmp *os.File
	if m.Type == "audio" {
		tmp, err = os.CreateTemp("", "bota-probe-*."+extensions[m.MimeType])
		if err != nil {
			return c, errInternal(err)
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		dst = io.MultiWriter(h, tmp)
	}
	if _, err := io.Copy(dst, rc); err != nil {
		return c, errUnavailable("Could not read media from storage; retry later.", err)
	}
	c.sha256 = hex.EncodeToString(h.Sum(nil))
	if tmp != nil {
		c.duration = probeDuration(ctx, tmp.Name())
	}
	return c, nil
}

// probeDuration returns the audio duration in milliseconds, or nil when
// the file cannot be decoded.
func probeDuration(ctx context.Context, path string) *int64 {
	info, err := audio.Probe(ctx, path)
	if err != nil {
		return nil
	}
	d := info.DurationMs
	return &d
}

func primaryChecked(checked []checkedMedia) *checkedMedia {
	for i := range checked {
		if checked[i].media.Type == "audio" {
			return &checked[i]
		}
	}
	return nil
}

// failIntegrity moves the recording to integrity_failure and answers 400
// checksum_mismatch. The mismatching media becomes expired, so that a
// corrected upload and complete recover the recording; its object stays
// until the housekeeping sweep removes expired media.
func (s *Server) failIntegrity(r *http.Request, rec *model.Recording, m *model.Media, sent, stored string) error {
	m.Status = model.MediaExpired
	if err := s.store.SaveMedia(r.Context(), m); err != nil {
		return errInternal(err)
	}
	rec.Status = model.RecordingIntegrityFailure
	if err := s.store.SaveRecordingState(r.Context(), rec); err != nil {
		return errInternal(err)
	}
	return &apiError{Status: 400, Code: "checksum_mismatch", Param: "content_sha256",
		Message: fmt.Sprintf("content_sha256 %s does not match the stored bytes (sha256 %s).", strings.ToLower(sent), stored)}
}

// markUploaded moves media and recording to uploaded and records the
// recording.uploaded event with the work the project's settings request
// now. It returns the response body, also stored for replays, and that
// work, nil when the settings could not be read: the dispatcher then reads
// them when it handles the event.
func (s *Server) markUploaded(ctx context.Context, tx *store.Store, rec *model.Recording, checked []checkedMedia, primary *checkedMedia) (map[string]any, *processing.UploadWork, error) {
	var work *processing.UploadWork
	if pc, err := Processing(ctx, tx, rec.Tenant); err != nil {
		loggerFrom(ctx).Warn("ProcessingConfigUnreadable", "project_id", rec.ProjectID, "mode", rec.Mode,
			"recording_id", rec.ID, "err", err)
	} else {
		work = &processing.UploadWork{Transcribe: pc.AutoTranscription, Provider: pc.Provider}
	}
	now := tx.Now()
	for _, c := range checked {
		m := c.media
		size, sum := c.size, c.sha256
		m.Status, m.FileSizeBytes, m.SHA256, m.DurationMs, m.UploadedAt = model.MediaUploaded, &size, &sum, c.duration, &now
		if err := tx.SaveMedia(ctx, m); err != nil {
			return nil, work, err
		}
	}
	fresh, err := tx.Recording(ctx, rec.Tenant, rec.ID)
	if err != nil {
		return nil, work, err
	}
	fresh.Status = model.RecordingUploaded
	fresh.UploadedAt, fresh.UpdatedAt = &now, now
	if primary != nil {
		sum := primary.sha256
		fresh.ContentSHA256, fresh.ContentSHA256VerifiedAt, fresh.DurationMs = &sum, &now, primary.duration
	}
	out := recordingJSON(fresh)
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, work, err
	}
	stored := string(raw)
	fresh.CompleteResponse = &stored
	if err := tx.SaveRecordingState(ctx, fresh); err != nil {
		return nil, work, err
	}
	var eventWork any
	if work != nil {
		eventWork = work
	}
	if _, err := tx.AddEventWork(ctx, rec.Tenant, "recording.uploaded", uploadedEventData(fresh), eventWork); err != nil {
		return nil, work, err
	}
	return out, work, nil
}

// sizeMismatch is the error of stored bytes whose count differs from the
// declared one.
func sizeMismatch(mediaID string, stored, declared int64) error {
	return &apiError{Status: 400, Code: "size_mismatch", Param: "file_size_bytes",
		Message: fmt.Sprintf("Media %s contains %d bytes but %d were declared.", mediaID, stored, declared)}
}

// uploadedEventData is the recording plus the documented extra fields of
// recording.uploaded that do not clash with it.
func uploadedEventData(rec *model.Recording) map[string]any {
	data := recordingJSON(rec)
	if a := primaryAudio(rec); a != nil {
		data["format"] = extensions[a.MimeType]
	}
	return data
}

func (s *Server) downloadURL(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	mediaID := r.URL.Query().Get("media_id")
	if r.Method == http.MethodPost {
		var body struct {
			MediaID optional[string] `json:"media_id"`
		}
		if err := decode(r, &body); err != nil {
			return err
		}
		if v := body.MediaID.ptr(); v != nil {
			mediaID = *v
		}
	}
	rec, err := s.recordingFromPath(r, p)
	if err != nil {
		return err
	}

	var m *model.Media
	if mediaID == "" {
		m = primaryAudio(rec)
		if m == nil && len(rec.Media) > 0 {
			m = rec.Media[0]
		}
	} else {
		for _, candidate := range rec.Media {
			if candidate.ID == mediaID {
				m = candidate
			}
		}
		if m == nil {
			return errNotFound("Media "+truncate(mediaID, 80), "media_id")
		}
	}
	if m == nil || m.Status != model.MediaUploaded {
		return errConflict("conflict", "media_id", "Recording %s has no uploaded media to download yet.", rec.ID)
	}

	expires := s.store.Now().Add(uploadURLLifetime)
	signed, err := s.blob.PresignGet(r.Context(), m.StorageKey, expires)
	if err != nil {
		return errInternal(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"download_url":    signed.URL,
		"expires_in":      int(uploadURLLifetime.Seconds()),
		"expires_at":      formatTime(signed.Expires),
		"media_id":        m.ID,
		"recording_id":    rec.ID,
		"content_type":    m.MimeType,
		"file_size_bytes": m.FileSizeBytes,
	})
	return nil
}
