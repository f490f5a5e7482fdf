package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

var (
	modelPattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	publicKeyPattern = regexp.MustCompile(`^[0-9a-fA-F]{128}$`)
)

type deviceBody struct {
	SerialNumber    optional[string]         `json:"serial_number"`
	Model           optional[string]         `json:"model"`
	DeviceType      optional[string]         `json:"device_type"`
	FirmwareVersion optional[string]         `json:"firmware_version"`
	Name            optional[string]         `json:"name"`
	Metadata        optional[map[string]any] `json:"metadata"`
	Settings        optional[map[string]any] `json:"settings"`
}

func (b *deviceBody) validate() error {
	if v := b.SerialNumber.ptr(); v != nil {
		if err := validateText("serial_number", *v, 1, 128); err != nil {
			return err
		}
	}
	if v := b.Model.ptr(); v != nil && !modelPattern.MatchString(*v) {
		return errInvalid("model", "model must be a lowercase name such as bota_pin, bota_pin_pro or bota_note.")
	}
	if v := b.DeviceType.ptr(); v != nil {
		if err := validateText("device_type", *v, 1, 64); err != nil {
			return err
		}
	}
	if v := b.FirmwareVersion.ptr(); v != nil {
		if err := validateText("firmware_version", *v, 1, 64); err != nil {
			return err
		}
	}
	if v := b.Name.ptr(); v != nil {
		if err := validateText("name", *v, 0, 128); err != nil {
			return err
		}
	}
	if b.Settings.Set {
		raw, _ := json.Marshal(b.Settings.Value)
		if len(raw) > maxSettingsBytes {
			return errInvalid("settings", "settings is %d bytes of JSON; at most %d are allowed.", len(raw), maxSettingsBytes)
		}
	}
	return validateMetadata("metadata", b.Metadata.Value)
}

// maxSettingsBytes bounds a device's stored settings, which every device
// response carries.
const maxSettingsBytes = 16 << 10

func (s *Server) registerDevice(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body deviceBody
	if err := decode(r, &body); err != nil {
		return err
	}
	if body.SerialNumber.ptr() == nil {
		return errInvalid("serial_number", "serial_number is required.")
	}
	if err := body.validate(); err != nil {
		return err
	}

	d := &model.Device{
		Tenant:          p.Tenant,
		SerialNumber:    body.SerialNumber.Value,
		Model:           "bota_pin",
		DeviceType:      body.DeviceType.ptr(),
		FirmwareVersion: body.FirmwareVersion.ptr(),
		Name:            body.Name.ptr(),
		Metadata:        body.Metadata.Value,
		Settings:        body.Settings.Value,
	}
	if m := body.Model.ptr(); m != nil {
		d.Model = *m
	} else if t := body.DeviceType.ptr(); t != nil && modelPattern.MatchString(*t) {
		d.Model = *t
	}
	stored, created, err := s.store.RegisterDevice(r.Context(), d)
	if err != nil {
		return errInternal(err)
	}

	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, deviceJSON(stored))
	return nil
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	page, err := s.pageParams(r)
	if err != nil {
		return err
	}
	f := store.DeviceFilter{
		Status:       queryFilter(r, "status"),
		EndUserID:    queryFilter(r, "end_user_id"),
		Model:        queryFilter(r, "model"),
		SerialNumber: queryFilter(r, "serial_number"),
	}
	if f.Status != nil && *f.Status != model.DeviceBound && *f.Status != model.DeviceUnbound {
		return errInvalid("status", "status must be bound or unbound.")
	}

	devices, more, err := s.store.Devices(r.Context(), p.Tenant, f, page)
	if err != nil {
		return errInternal(err)
	}

	writePage(s, w, r, devices, more, deviceJSON)
	return nil
}

// deviceFromPath loads the device named by the path's id. A device token
// may name only its own device, by id or as "me".
func (s *Server) deviceFromPath(r *http.Request, p *auth.Principal) (*model.Device, error) {
	id := r.PathValue("id")
	if p.Kind == auth.KindDevice {
		if id != "me" && id != p.DeviceID {
			return nil, errNotFound("Device "+truncate(id, 80), "id")
		}
		id = p.DeviceID
	}
	if !ids.Valid(ids.Device, id) {
		return nil, errNotFound("Device "+truncate(id, 80), "id")
	}
	d, err := s.store.Device(r.Context(), p.Tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNotFound("Device "+id, "id")
	}
	if err != nil {
		return nil, errInternal(err)
	}
	return d, nil
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	d, err := s.deviceFromPath(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, deviceJSON(d))
	return nil
}

func (s *Server) updateDevice(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body deviceBody
	if err := decode(r, &body); err != nil {
		return err
	}
	if err := body.validate(); err != nil {
		return err
	}
	d, err := s.deviceFromPath(r, p)
	if err != nil {
		return err
	}

	if body.Name.Set {
		d.Name = body.Name.ptr()
	}
	if body.FirmwareVersion.Set {
		d.FirmwareVersion = body.FirmwareVersion.ptr()
	}
	if body.Metadata.Set {
		d.Metadata = body.Metadata.Value
	}
	if body.Settings.Set {
		// NOTE: settings are stored as given; validation and defaults per
		// namespace come with the device settings endpoints.
		d.Settings = body.Settings.Value
	}
	if err := s.store.UpdateDevice(r.Context(), d); err != nil {
		return errInternal(err)
	}

	writeJSON(w, http.StatusOK, deviceJSON(d))
	return nil
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	d, err := s.deviceFromPath(r, p)
	if err != nil {
		return err
	}
	err = s.store.DeleteDevice(r.Context(), p.Tenant, d.ID)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Device "+d.ID, "id")
	}
	if err != nil {
		return errInternal(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) bindDevice(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body struct {
		EndUserID optional[string] `json:"end_user_id"`
		PublicKey optional[string] `json:"pk_d"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	endUserID := body.EndUserID.ptr()
	if endUserID == nil || *endUserID == "" {
		return errInvalid("end_user_id", "end_user_id is required.")
	}
	if pk := body.PublicKey.ptr(); pk != nil && !publicKeyPattern.MatchString(*pk) {
		return errInvalid("pk_d", "pk_d must be 128 hexadecimal characters.")
	}
	d, err := s.deviceFromPath(r, p)
	if err != nil {
		return err
	}
	if !ids.Valid(ids.EndUser, *endUserID) {
		return errNotFound("End user "+truncate(*endUserID, 80), "end_user_id")
	}

	token := ids.NewSecret("dtok_")
	var bound *model.Device
	err = s.store.InTx(r.Context(), func(tx *store.Store) error {
		if _, err := tx.EndUser(r.Context(), p.Tenant, *endUserID); err != nil {
			return err
		}
		wasBound := d.Status == model.DeviceBound
		var err error
		bound, err = tx.BindDevice(r.Context(), p.Tenant, d.ID, *endUserID, hashSecret(token),
			body.PublicKey.ptr(), s.cfg.DeviceTokenTTL)
		if err != nil || wasBound {
			return err
		}
		_, err = tx.AddEvent(r.Context(), p.Tenant, "device.bound", deviceJSON(bound))
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNotFound("End user "+*endUserID, "end_user_id")
	case errors.Is(err, store.ErrAlreadyBound):
		return errConflict("device_already_bound", "id",
			"Device %s is bound to another end user; unbind it first.", d.ID)
	case err != nil:
		return errInternal(err)
	}

	out := deviceJSON(bound)
	out["device_token"] = token
	out["device_token_expires_at"] = s.tokenExpiry()
	out["cert"] = nil
	out["ble_pubkey"] = nil
	writeJSON(w, http.StatusOK, out)
	return nil
}

// tokenExpiry is when a token issued now expires: null unless the server
// sets --device-token-ttl.
func (s *Server) tokenExpiry() any {
	if s.cfg.DeviceTokenTTL <= 0 {
		return nil
	}
	return formatTime(s.store.Now().Add(s.cfg.DeviceTokenTTL))
}

// reissueDeviceToken serves replays of bind and token refresh: the token
// in the lost response is revoked and a new one goes in the replayed body.
func (s *Server) reissueDeviceToken(r *http.Request, p *auth.Principal, body map[string]any) error {
	id, _ := body["id"].(string)
	token := ids.NewSecret("dtok_")
	var err error
	if p.Kind == auth.KindDevice {
		err = s.store.InTx(r.Context(), func(tx *store.Store) error {
			_, err := tx.RefreshDeviceToken(r.Context(), p.DeviceToken, hashSecret(token), s.cfg.DeviceTokenTTL)
			return err
		})
	} else {
		err = s.store.InTx(r.Context(), func(tx *store.Store) error {
			_, err := tx.ReissueDeviceToken(r.Context(), p.Tenant, id, hashSecret(token), s.cfg.DeviceTokenTTL)
			return err
		})
	}
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Device "+id, "id")
	}
	if errors.Is(err, store.ErrConflict) {
		return errConflict("conflict", "id", "Device %s is no longer bound; bind it again.", id)
	}
	if err != nil {
		return errInternal(err)
	}
	body["device_token"] = token
	body["device_token_expires_at"] = s.tokenExpiry()
	return nil
}

func (s *Server) unbindDevice(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	d, err := s.deviceFromPath(r, p)
	if err != nil {
		return err
	}

	var unbound *model.Device
	err = s.store.InTx(r.Context(), func(tx *store.Store) error {
		var err error
		unbound, err = tx.UnbindDevice(r.Context(), p.Tenant, d.ID)
		if err != nil || d.Status != model.DeviceBound {
			return err
		}
		_, err = tx.AddEvent(r.Context(), p.Tenant, "device.unbound", deviceJSON(unbound))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Device "+d.ID, "id")
	}
	if err != nil {
		return errInternal(err)
	}

	writeJSON(w, http.StatusOK, deviceJSON(unbound))
	return nil
}

func (s *Server) refreshDeviceToken(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	d, err := s.deviceFromPath(r, p)
	if err != nil {
		return err
	}

	token := ids.NewSecret("dtok_")
	err = s.store.InTx(r.Context(), func(tx *store.Store) error {
		_, err := tx.RefreshDeviceToken(r.Context(), p.DeviceToken, hashSecret(token), s.cfg.DeviceTokenTTL)
		return err
	})
	if err != nil {
		return errInternal(err)
	}

	out := deviceJSON(d)
	out["device_token"] = token
	out["device_token_expires_at"] = s.tokenExpiry()
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deviceState(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	d, err := s.deviceFromPath(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"device_id":          d.ID,
		"project_id":         d.ProjectID,
		"online":             online(d, s.cfg.HeartbeatInterval, s.store.Now()),
		"recording":          map[string]any{"active": false, "recording_id": nil, "started_at": nil, "initiated_by": nil},
		"battery_percent":    d.BatteryPercent,
		"storage_used_mb":    d.StorageUsedMB,
		"storage_total_mb":   d.StorageTotalMB,
		"last_heartbeat_at":  formatTimePtr(d.LastHeartbeatAt),
		"binding_generation": d.BindingGeneration,
		"recording_state":    recordingStateJSON(d.RecordingState),
		"last_synced_at":     nil,
		"last_seen_by":       nil,
		"last_synced_by":     nil,
	})
	return nil
}

func (s *Server) deviceStats(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	since := s.store.Now().Add(-2 * s.cfg.HeartbeatInterval)
	st, err := s.store.FleetStats(r.Context(), p.Tenant, since)
	if err != nil {
		return errInternal(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"project_id":         p.ProjectID,
		"online_count":       st.Online,
		"low_battery_count":  st.LowBattery,
		"storage_full_count": st.StorageFull,
		"total_count":        st.Total,
	})
	return nil
}
