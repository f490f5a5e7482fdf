package api

import (
	"time"

	"github.com/botaserver/bota/internal/model"
)

// The JSON objects of the API. Every key is present, with null for absent
// values, except where the reference says a key is omitted.

func endUserJSON(u *model.EndUser) map[string]any {
	return map[string]any{
		"id":          u.ID,
		"object":      "end_user",
		"project_id":  u.ProjectID,
		"external_id": u.ExternalID,
		"email":       u.Email,
		"name":        u.Name,
		"metadata":    object(u.Metadata),
		"created_at":  formatTime(u.CreatedAt),
		"updated_at":  formatTime(u.UpdatedAt),
		"deleted_at":  nil,
	}
}

func deviceJSON(d *model.Device) map[string]any {
	deviceType := d.Model
	if d.DeviceType != nil {
		deviceType = *d.DeviceType
	}
	return map[string]any{
		"id":                  d.ID,
		"object":              "device",
		"project_id":          d.ProjectID,
		"serial_number":       d.SerialNumber,
		"model":               d.Model,
		"device_type":         deviceType,
		"firmware_version":    d.FirmwareVersion,
		"name":                d.Name,
		"status":              d.Status,
		"end_user_id":         d.EndUserID,
		"bound_at":            formatTimePtr(d.BoundAt),
		"binding_generation":  d.BindingGeneration,
		"battery_percent":     d.BatteryPercent,
		"storage_used_mb":     d.StorageUsedMB,
		"storage_total_mb":    d.StorageTotalMB,
		"signal_strength_dbm": d.SignalStrengthDBM,
		"last_heartbeat_at":   formatTimePtr(d.LastHeartbeatAt),
		"recording_state":     recordingStateJSON(d.RecordingState),
		"metadata":            object(d.Metadata),
		"settings":            object(d.Settings),
		"created_at":          formatTime(d.CreatedAt),
		"updated_at":          formatTime(d.UpdatedAt),
		"deleted_at":          nil,
	}
}

// online reports whether the device heartbeated within twice the interval.
func online(d *model.Device, interval time.Duration, now time.Time) bool {
	return d.LastHeartbeatAt != nil && now.Sub(*d.LastHeartbeatAt) < 2*interval
}

// object returns m, or an empty object for nil, so metadata is never null.
func object(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
