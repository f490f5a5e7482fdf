package simulate

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"path/filepath"
	"time"
)

// Simulated hardware: what a Bota pin reports in its heartbeats.
const (
	firmwareVersion = "1.4.2"
	storageTotalMB  = 16384
	// maxRepairs is how many times a device sends a file again after
	// upload-complete found the stored bytes different from the file.
	maxRepairs = 2
)

// device is one simulated device and its state during a run.
type device struct {
	index  int
	cfg    *Config
	files  []audioFile
	client *client
	stats  *collector
	base   string

	id      string
	token   string
	battery int
	// storageUsed is the simulated flash in use, in bytes.
	storageUsed int64
}

// name is the device's serial number and its end user's external id.
func (d *device) name() string {
	return fmt.Sprintf("%s-%s-%d", d.cfg.Prefix, d.cfg.RunID, d.index)
}

func (d *device) run(ctx context.Context) {
	if err := d.setup(ctx); err != nil {
		d.abandon(0, err)
		return
	}
	d.stats.devicesReady.Add(1)
	d.battery = 40 + mathrand.N(61)
	d.storageUsed = mathrand.N[int64](2048) << 20

	uploads := d.cfg.UploadsPerDevice
	for range max(d.cfg.Heartbeats, 0) {
		d.heartbeat(ctx, "idle", uploads)
	}
	for j := range uploads {
		if ctx.Err() != nil {
			d.abandon(j, ctx.Err())
			return
		}
		if d.cfg.Refresh && j == uploads/2 {
			d.refresh(ctx)
		}
		file := d.files[(d.index+j)%len(d.files)]
		if err := d.upload(ctx, file); err != nil {
			f := Failure{Device: d.index, File: filepath.Base(file.Path), Error: err.Error()}
			if d.stats.fail(f, 1) {
				d.cfg.Logger.Warn("UploadFailed", "device", d.index, "device_id", d.id,
					"file", file.Path, "err", err)
			}
		}
		if d.cfg.Heartbeats > 0 {
			d.heartbeat(ctx, "idle", uploads-j-1)
		}
	}
}

// abandon counts the device's uploads from index from on as failed.
func (d *device) abandon(from int, err error) {
	left := d.cfg.UploadsPerDevice - from
	if d.stats.fail(Failure{Device: d.index, Error: err.Error()}, left) {
		d.cfg.Logger.Warn("DeviceAbandoned", "device", d.index, "device_id", d.id,
			"uploads_left", left, "err", err)
	}
}

// setup creates the device's end user, registers the device and binds it,
// which yields the device token.
func (d *device) setup(ctx context.Context) error {
	name := d.name()
	var user struct {
		ID string `json:"id"`
	}
	err := d.client.do(ctx, call{step: StepEndUser, method: http.MethodPost,
		url: d.base + "/v1/end-users", token: d.cfg.APIKey, idempotencyKey: newKey(),
		body: map[string]any{
			"external_id": name,
			"name":        fmt.Sprintf("Simulated user %d", d.index),
			"metadata":    map[string]any{"simulation_run": d.cfg.RunID},
		},
		out: &user})
	if err != nil {
		return err
	}

	var dev struct {
		ID string `json:"id"`
	}
	err = d.client.do(ctx, call{step: StepRegister, method: http.MethodPost,
		url: d.base + "/v1/devices", token: d.cfg.APIKey, idempotencyKey: newKey(),
		body: map[string]any{
			"serial_number":    name,
			"model":            "bota_pin",
			"firmware_version": firmwareVersion,
			"name":             fmt.Sprintf("Simulated pin %d", d.index),
			"metadata":         map[string]any{"simulation_run": d.cfg.RunID},
		},
		out: &dev})
	if err != nil {
		return err
	}
	d.id = dev.ID

	var bound struct {
		DeviceToken string `json:"device_token"`
	}
	err = d.client.do(ctx, call{step: StepBind, method: http.MethodPost,
		url: d.base + "/v1/devices/" + dev.ID + "/bind", token: d.cfg.APIKey, idempotencyKey: newKey(),
		body: map[string]any{"end_user_id": user.ID}, out: &bound})
	if err != nil {
		return err
	}
	if bound.DeviceToken == "" {
		return &StepError{Step: StepBind, Kind: "bad_response", Message: "bind returned no device_token"}
	}
	d.token = bound.DeviceToken
	return nil
}

// heartbeat reports plausible device vitals: the battery drains a little
// each time, storage fills with the audio sent, and the 4G signal varies.
// A failed heartbeat is counted in the errors and does not stop uploads.
func (d *device) heartbeat(ctx context.Context, state string, pending int) {
	if d.battery > 5 && mathrand.N(3) == 0 {
		d.battery--
	}
	err := d.client.do(ctx, call{step: StepHeartbeat, method: http.MethodPost,
		url: d.base + "/v1/devices/me/heartbeat", token: d.token, idempotencyKey: newKey(),
		body: map[string]any{
			"battery_percent":     d.battery,
			"storage_used_mb":     min(d.storageUsed>>20, storageTotalMB),
			"storage_total_mb":    storageTotalMB,
			"signal_strength_dbm": -65 - mathrand.N(50),
			"firmware_version":    firmwareVersion,
			"device_state":        state,
			"pending_recordings":  pending,
			"connection_type":     []string{"4g"},
		}})
	if err == nil {
		d.stats.heartbeats.Add(1)
	}
}

// refresh swaps the device token for a new one. On failure the device
// keeps its current token.
func (d *device) refresh(ctx context.Context) {
	var out struct {
		DeviceToken string `json:"device_token"`
	}
	err := d.client.do(ctx, call{step: StepRefresh, method: http.MethodPost,
		url: d.base + "/v1/devices/me/token/refresh", token: d.token, idempotencyKey: newKey(),
		out: &out})
	if err != nil {
		d.cfg.Logger.Warn("TokenRefreshFailed", "device", d.index, "device_id", d.id, "err", err)
		return
	}
	if out.DeviceToken != "" {
		d.token = out.DeviceToken
	}
}

// upload sends one file as a new recording: create, upload-url, PUT,
// upload-complete. It records the end-to-end latency and the Ack.
func (d *device) upload(ctx context.Context, file audioFile) error {
	start := time.Now()
	var rec struct {
		ID string `json:"id"`
	}
	err := d.client.do(ctx, call{step: StepCreate, method: http.MethodPost,
		url: d.base + "/v1/recordings", token: d.token, idempotencyKey: newKey(),
		body: map[string]any{
			"name":          filepath.Base(file.Path),
			"upload_method": "cellular",
			"recorded_at":   time.Now().Add(-time.Minute).UTC(),
			"metadata":      map[string]any{"simulation_run": d.cfg.RunID},
		},
		out: &rec})
	if err != nil {
		return err
	}

	var target struct {
		UploadURL string            `json:"upload_url"`
		Method    string            `json:"method"`
		Headers   map[string]string `json:"headers"`
	}
	err = d.client.do(ctx, call{step: StepUploadURL, method: http.MethodPost,
		url: d.base + "/v1/recordings/" + rec.ID + "/upload-url", token: d.token, idempotencyKey: newKey(),
		body: map[string]any{"type": "audio", "content_type": file.ContentType, "file_size_bytes": file.Size},
		out:  &target})
	if err != nil {
		return fmt.Errorf("recording %s: %w", rec.ID, err)
	}
	if target.Method == "" {
		target.Method = http.MethodPut
	}

	for repair := 0; ; repair++ {
		err = d.client.do(ctx, call{step: StepPut, method: target.Method, url: target.UploadURL,
			header: target.Headers, file: &file})
		if err != nil {
			return fmt.Errorf("recording %s: %w", rec.ID, err)
		}
		err = d.complete(ctx, rec.ID, file)
		var se *StepError
		if errors.As(err, &se) && (se.Kind == "checksum_mismatch" || se.Kind == "size_mismatch") &&
			repair < maxRepairs {
			d.cfg.Logger.Warn("UploadRepaired", "device", d.index, "recording_id", rec.ID, "kind", se.Kind)
			continue
		}
		if err != nil {
			return fmt.Errorf("recording %s: %w", rec.ID, err)
		}
		break
	}

	d.stats.latency(StepEndToEnd, time.Since(start))
	d.storageUsed += file.Size
	d.stats.ack(Ack{RecordingID: rec.ID, DeviceID: d.id, File: filepath.Base(file.Path),
		SizeBytes: file.Size, SHA256: file.SHA256})
	return nil
}

// complete calls upload-complete with the file's digest and checks that
// the server stored the same digest.
func (d *device) complete(ctx context.Context, recordingID string, file audioFile) error {
	var done struct {
		Status        string `json:"status"`
		ContentSHA256 string `json:"content_sha256"`
	}
	err := d.client.do(ctx, call{step: StepComplete, method: http.MethodPost,
		url:   d.base + "/v1/recordings/" + recordingID + "/upload-complete",
		token: d.token, idempotencyKey: newKey(),
		body: map[string]any{"content_sha256": file.SHA256, "file_size_bytes": file.Size},
		out:  &done})
	if err != nil {
		return err
	}
	if done.ContentSHA256 != file.SHA256 {
		d.stats.fault(StepComplete, "sha256_differs")
		return &StepError{Step: StepComplete, Kind: "sha256_differs",
			Message: fmt.Sprintf("server acknowledged sha256 %s, file has %s", done.ContentSHA256, file.SHA256)}
	}
	return nil
}
