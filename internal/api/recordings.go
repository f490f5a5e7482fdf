package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

var (
	recordingSources  = []string{"device", "api_upload"}
	uploadMethods     = []string{"import", "ble", "wifi", "cellular"}
	recordingStatuses = []string{model.RecordingPending, model.RecordingStreaming, model.RecordingUploaded,
		model.RecordingProcessing, model.RecordingCompleted, model.RecordingFailed, model.RecordingIntegrityFailure}
)

type createRecordingBody struct {
	DeviceID     optional[string]         `json:"device_id"`
	EndUserID    optional[string]         `json:"end_user_id"`
	Source       optional[string]         `json:"source"`
	UploadMethod optional[string]         `json:"upload_method"`
	Name         optional[string]         `json:"name"`
	RecordedAt   optional[time.Time]      `json:"recorded_at"`
	StartedAt    optional[time.Time]      `json:"started_at"`
	EndedAt      optional[time.Time]      `json:"ended_at"`
	Metadata     optional[map[string]any] `json:"metadata"`
	Streaming    bool                     `json:"streaming"`
	ContentType  optional[string]         `json:"content_type"`
}

func (b *createRecordingBody) validate() error {
	if v := b.Source.ptr(); v != nil && !slices.Contains(recordingSources, *v) {
		return errInvalid("source", "source must be device or api_upload.")
	}
	if v := b.UploadMethod.ptr(); v != nil && !slices.Contains(uploadMethods, *v) {
		return errInvalid("upload_method", "upload_method must be import, ble, wifi or cellular.")
	}
	if v := b.Name.ptr(); v != nil {
		if err := validateText("name", *v, 0, 500); err != nil {
			return err
		}
	}
	if v := b.ContentType.ptr(); v != nil && !slices.Contains(contentTypes["audio"], *v) {
		return errInvalid("content_type", "content_type of a streamed recording must be an audio type such as audio/opus.")
	}
	return validateMetadata("metadata", b.Metadata.Value)
}

func (s *Server) createRecording(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body createRecordingBody
	if err := decode(r, &body); err != nil {
		return err
	}
	if err := body.validate(); err != nil {
		return err
	}

	rec := &model.Recording{
		Tenant:       p.Tenant,
		Name:         body.Name.ptr(),
		UploadMethod: body.UploadMethod.ptr(),
		RecordedAt:   body.RecordedAt.ptr(),
		StartedAt:    body.StartedAt.ptr(),
		EndedAt:      body.EndedAt.ptr(),
		Metadata:     body.Metadata.Value,
		Status:       model.RecordingPending,
		Streaming:    body.Streaming,
	}
	if rec.RecordedAt == nil {
		rec.RecordedAt = rec.StartedAt
	}
	if err := s.resolveRecordingOwner(r, p, &body, rec); err != nil {
		return err
	}
	if body.Streaming {
		rec.Status = model.RecordingStreaming
		raw, _ := json.Marshal(streamState{ContentType: streamContentType(body.ContentType.ptr())})
		state := string(raw)
		rec.StreamState = &state
	}

	err := s.store.InTx(r.Context(), func(tx *store.Store) error {
		if err := tx.CreateRecording(r.Context(), rec); err != nil {
			return err
		}
		rec.Media = []*model.Media{}
		_, err := tx.AddEvent(r.Context(), p.Tenant, "recording.created", recordingJSON(rec))
		return err
	})
	if err != nil {
		return errInternal(err)
	}

	out := recordingJSON(rec)
	if rec.Streaming {
		tmpl, err := s.chunkTemplate(r, rec, streamContentType(body.ContentType.ptr()))
		if err != nil {
			return err
		}
		out["chunk_upload_url"] = tmpl.URL
		out["chunk_url_expires_at"] = formatTime(tmpl.Expires)
		out["chunk_headers"] = tmpl.Headers
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// resolveRecordingOwner fills device_id, end_user_id and source. A device
// token's own device and its end user always win over the body.
func (s *Server) resolveRecordingOwner(r *http.Request, p *auth.Principal, body *createRecordingBody, rec *model.Recording) error {
	if p.Kind == auth.KindDevice {
		d, err := s.store.Device(r.Context(), p.Tenant, p.DeviceID)
		if err != nil {
			return errNotFound("Device "+p.DeviceID, "device_id")
		}
		if d.EndUserID == nil {
			return errConflict("conflict", "device_id", "Device %s is not bound to an end user.", d.ID)
		}
		rec.DeviceID, rec.EndUserID = &d.ID, d.EndUserID
		rec.Source = "device"
		if v := body.Source.ptr(); v != nil {
			rec.Source = *v
		}
		return nil
	}
	rec.Source = "api_upload"
	if v := body.Source.ptr(); v != nil {
		rec.Source = *v
	}
	deviceID, endUserID := body.DeviceID.ptr(), body.EndUserID.ptr()
	if deviceID == nil && endUserID == nil {
		return errInvalid("end_user_id", "end_user_id or device_id is required.")
	}
	if deviceID != nil {
		if !ids.Valid(ids.Device, *deviceID) {
			return errNotFound("Device "+truncate(*deviceID, 80), "device_id")
		}
		d, err := s.store.Device(r.Context(), p.Tenant, *deviceID)
		if errors.Is(err, store.ErrNotFound) {
			return errNotFound("Device "+*deviceID, "device_id")
		}
		if err != nil {
			return errInternal(err)
		}
		rec.DeviceID = &d.ID
		if endUserID == nil {
			endUserID = d.EndUserID
		}
	}
	if endUserID == nil {
		return errInvalid("end_user_id", "end_user_id is required: device %s is not bound.", *deviceID)
	}
	if !ids.Valid(ids.EndUser, *endUserID) {
		return errNotFound("End user "+truncate(*endUserID, 80), "end_user_id")
	}
	if _, err := s.store.EndUser(r.Context(), p.Tenant, *endUserID); errors.Is(err, store.ErrNotFound) {
		return errNotFound("End user "+*endUserID, "end_user_id")
	} else if err != nil {
		return errInternal(err)
	}
	rec.EndUserID = endUserID
	return nil
}

// recordingFromPath loads the recording named by the path's id. A device
// token reaches only its device's recordings and an upload token only its
// own recording; anything else is 404, so ids cannot be probed.
func (s *Server) recordingFromPath(r *http.Request, p *auth.Principal) (*model.Recording, error) {
	id := r.PathValue("id")
	notFound := errNotFound("Recording "+truncate(id, 80), "id")
	if !ids.Valid(ids.Recording, id) {
		return nil, notFound
	}
	if p.Kind == auth.KindUploadToken && p.RecordingID != id {
		return nil, notFound
	}
	rec, err := s.store.Recording(r.Context(), p.Tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, errInternal(err)
	}
	if p.Kind == auth.KindDevice && (rec.DeviceID == nil || *rec.DeviceID != p.DeviceID) {
		return nil, notFound
	}
	return rec, nil
}

func (s *Server) listRecordings(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	page, err := s.pageParams(r)
	if err != nil {
		return err
	}
	f := store.RecordingFilter{
		DeviceID:  queryFilter(r, "device_id"),
		EndUserID: queryFilter(r, "end_user_id"),
		Status:    queryFilter(r, "status"),
	}
	if f.Status != nil && !slices.Contains(recordingStatuses, *f.Status) {
		return errInvalid("status", "status must be one of pending, streaming, uploaded, processing, completed, failed, integrity_failure.")
	}
	for _, tf := range []struct {
		name string
		dst  **time.Time
	}{{"created_after", &f.CreatedAfter}, {"created_before", &f.CreatedBefore}} {
		if v := r.URL.Query().Get(tf.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return errInvalid(tf.name, "%s must be an RFC 3339 time such as 2026-01-15T09:00:00Z.", tf.name)
			}
			*tf.dst = &t
		}
	}

	recs, more, err := s.store.Recordings(r.Context(), p.Tenant, f, page)
	if err != nil {
		return errInternal(err)
	}

	writePage(s, w, r, recs, more, recordingJSON)
	return nil
}

func (s *Server) getRecording(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	rec, err := s.recordingFromPath(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, recordingJSON(rec))
	return nil
}

func (s *Server) updateRecording(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body struct {
		Name     optional[string]         `json:"name"`
		Metadata optional[map[string]any] `json:"metadata"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	if v := body.Name.ptr(); v != nil {
		if err := validateText("name", *v, 0, 500); err != nil {
			return err
		}
	}
	if err := validateMetadata("metadata", body.Metadata.Value); err != nil {
		return err
	}
	rec, err := s.recordingFromPath(r, p)
	if err != nil {
		return err
	}

	if body.Name.Set {
		rec.Name = body.Name.ptr()
	}
	if body.Metadata.Set {
		rec.Metadata = body.Metadata.Value
	}
	if err := s.store.UpdateRecordingDetails(r.Context(), rec); err != nil {
		return errInternal(err)
	}

	writeJSON(w, http.StatusOK, recordingJSON(rec))
	return nil
}

func (s *Server) deleteRecording(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	rec, err := s.recordingFromPath(r, p)
	if err != nil {
		return err
	}

	var keys []string
	err = s.store.InTx(r.Context(), func(tx *store.Store) error {
		var err error
		keys, err = tx.DeleteRecording(r.Context(), p.Tenant, rec.ID)
		if err != nil {
			return err
		}
		data := recordingJSON(rec)
		data["deleted_at"] = formatTime(tx.Now())
		_, err = tx.AddEvent(r.Context(), p.Tenant, "recording.deleted", data)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Recording "+rec.ID, "id")
	}
	if err != nil {
		return errInternal(err)
	}
	s.deleteBlobs(r, keys)
	s.deleteChunks(r, rec)

	w.WriteHeader(http.StatusNoContent)
	return nil
}
