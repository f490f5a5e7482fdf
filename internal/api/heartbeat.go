package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/botaserver/bota/internal/auth"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/store"
)

// heartbeatAccess is who may send a heartbeat: a device token for its own
// device, or a key with devices:write.
var heartbeatAccess = access{scope: "devices:write", device: true}

var (
	deviceStates    = []string{"idle", "recording", "syncing", "uploading", "charging", "lowBattery", "storageFull", "error"}
	connectionTypes = []string{"wifi", "4g", "ble"}
)

type heartbeatBody struct {
	BatteryPercent    *int     `json:"battery_percent"`
	StorageUsedMB     *int     `json:"storage_used_mb"`
	StorageTotalMB    *int     `json:"storage_total_mb"`
	SignalStrengthDBM *int     `json:"signal_strength_dbm"`
	FirmwareVersion   *string  `json:"firmware_version"`
	Name              *string  `json:"name"`
	DeviceState       *string  `json:"device_state"`
	PendingRecordings *int     `json:"pending_recordings"`
	Flags             *int     `json:"flags"`
	ConnectionType    []string `json:"connection_type"`
	CommandResults    []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"command_results"`
}

func (b *heartbeatBody) validate() error {
	intRange := func(param string, v *int, min, max int) error {
		if v != nil && (*v < min || *v > max) {
			return errInvalid(param, "%s must be from %d to %d; got %d.", param, min, max, *v)
		}
		return nil
	}
	checks := []error{
		intRange("battery_percent", b.BatteryPercent, 0, 100),
		intRange("storage_used_mb", b.StorageUsedMB, 0, 1<<30),
		intRange("storage_total_mb", b.StorageTotalMB, 0, 1<<30),
		intRange("signal_strength_dbm", b.SignalStrengthDBM, -200, 0),
		intRange("pending_recordings", b.PendingRecordings, 0, 1<<30),
		intRange("flags", b.Flags, 0, 255),
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	if b.FirmwareVersion != nil {
		if err := validateText("firmware_version", *b.FirmwareVersion, 1, 32); err != nil {
			return err
		}
	}
	if b.Name != nil {
		if err := validateText("name", *b.Name, 0, 64); err != nil {
			return err
		}
	}
	if b.DeviceState != nil && !slices.Contains(deviceStates, *b.DeviceState) {
		return errInvalid("device_state", "device_state must be one of idle, recording, syncing, uploading, charging, lowBattery, storageFull, error.")
	}
	for _, c := range b.ConnectionType {
		if !slices.Contains(connectionTypes, c) {
			return errInvalid("connection_type", "connection_type entries must be wifi, 4g or ble; got %q.", truncate(c, 20))
		}
	}
	return nil
}

// reportsState reports whether the heartbeat carries recording_state fields.
func (b *heartbeatBody) reportsState() bool {
	return b.DeviceState != nil || b.PendingRecordings != nil || b.Flags != nil || b.ConnectionType != nil
}

// statePatch returns the recording_state fields the heartbeat reports, as a
// JSON object to merge into the stored one, or nil when it reports none.
// validate has checked the strings against fixed lists of plain words, so
// they need no escaping.
func (b *heartbeatBody) statePatch() json.RawMessage {
	if !b.reportsState() {
		return nil
	}
	patch := make([]byte, 0, 128)
	field := func(name string) {
		if len(patch) > 0 {
			patch = append(patch, ',')
		} else {
			patch = append(patch, '{')
		}
		patch = append(patch, '"')
		patch = append(patch, name...)
		patch = append(patch, '"', ':')
	}
	if b.DeviceState != nil {
		field("device_state")
		patch = strconv.AppendQuote(patch, *b.DeviceState)
	}
	if b.PendingRecordings != nil {
		field("pending_recordings")
		patch = strconv.AppendInt(patch, int64(*b.PendingRecordings), 10)
	}
	if b.Flags != nil {
		field("flags")
		patch = strconv.AppendInt(patch, int64(*b.Flags), 10)
	}
	if b.ConnectionType != nil {
		field("connection_type")
		patch = append(patch, '[')
		for i, c := range b.ConnectionType {
			if i > 0 {
				patch = append(patch, ',')
			}
			patch = strconv.AppendQuote(patch, c)
		}
		patch = append(patch, ']')
	}
	return append(patch, '}')
}

// report returns the heartbeat as the store takes it.
func (b *heartbeatBody) report() store.Heartbeat {
	return store.Heartbeat{
		BatteryPercent:    b.BatteryPercent,
		StorageUsedMB:     b.StorageUsedMB,
		StorageTotalMB:    b.StorageTotalMB,
		SignalStrengthDBM: b.SignalStrengthDBM,
		FirmwareVersion:   b.FirmwareVersion,
		Name:              b.Name,
		StatePatch:        b.statePatch(),
	}
}

// recordingState is the recording_state object as devices report it.
type recordingState struct {
	DeviceState       *string  `json:"device_state"`
	PendingRecordings *int     `json:"pending_recordings"`
	Flags             *int     `json:"flags"`
	ConnectionType    []string `json:"connection_type"`
}

// recordingStateJSON renders a stored recording_state with its keys in one
// order on every engine, or null when the device never reported one.
func recordingStateJSON(raw []byte) any {
	if len(raw) == 0 {
		return nil
	}
	var st recordingState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil
	}
	if st.ConnectionType == nil {
		st.ConnectionType = []string{}
	}
	return st
}

// heartbeatRoute serves heartbeats. A fleet sends them all day, so a
// device token that has passed the full check before takes a shorter
// path: one statement checks the token and writes the heartbeat, in place
// of a token read and then an update. The node remembers the token's
// device and project only to pick the row. The statement decides whether
// the token is still valid, so a revoked or expired token fails at once on
// every node. Every response other than success comes from the full check,
// so both paths return the same errors.
func (s *Server) heartbeatRoute() http.HandlerFunc {
	guarded := s.guard(heartbeatAccess, s.heartbeat)
	return func(w http.ResponseWriter, r *http.Request) {
		secret := bearer(r)
		if !strings.HasPrefix(secret, "dtok_") || len(secret) > 256 || r.Header.Get("Idempotency-Key") != "" {
			guarded(w, r)
			return
		}
		hash := ids.Hash(secret)
		p := s.tokenDevices.get(hash)
		if p == nil || (r.PathValue("id") != "me" && r.PathValue("id") != p.DeviceID) {
			guarded(w, r)
			return
		}
		if err := s.knownTokenHeartbeat(w, r, hash, p); err != nil {
			writeError(w, r, err)
		}
	}
}

// knownTokenHeartbeat stores the heartbeat of a device token seen before,
// whose hash is hash and whose device and project p contains.
func (s *Server) knownTokenHeartbeat(w http.ResponseWriter, r *http.Request, hash string, p *auth.Principal) error {
	// checked returns the credential's error when it has one, as guard
	// does before anything else, and err otherwise. A credential that
	// fails leaves no rate-limit headers, as on guard's path.
	checked := func(err error) (*auth.Principal, error) {
		full, aerr := s.authorize(r, heartbeatAccess)
		if aerr != nil {
			s.tokenDevices.drop(hash)
			for _, h := range rateLimitHeaders {
				w.Header().Del(h)
			}
			return nil, aerr
		}
		return full, err
	}
	r = withPrincipal(r, p)
	var body heartbeatBody
	err := s.limits.allow(w, p, "")
	if err == nil {
		err = decode(r, &body)
	}
	if err == nil {
		err = body.validate()
	}
	if err != nil {
		_, err = checked(err)
		return err
	}

	if err := s.store.RecordTokenHeartbeat(r.Context(), p.Tenant, p.DeviceID, hash, body.report()); err != nil {
		// The token has been revoked, has expired or was replaced, the
		// device is gone, or the database failed. The full check
		// determines which, and a database failure then fails it too.
		s.tokenDevices.drop(hash)
		full, err := checked(nil)
		if err != nil {
			return err
		}
		return s.storeHeartbeat(w, r, full, &body)
	}
	s.metrics.heartbeatsByUpdate.Inc()
	writeHeartbeatReply(w)
	return nil
}

// heartbeat stores what a device reports after guard's full check, and
// remembers a device token that passed it for heartbeatRoute.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var body heartbeatBody
	if err := decode(r, &body); err != nil {
		return err
	}
	if err := body.validate(); err != nil {
		return err
	}
	return s.storeHeartbeat(w, r, p, &body)
}

// storeHeartbeat writes body for the device that p may report for, and
// writes the reply.
func (s *Server) storeHeartbeat(w http.ResponseWriter, r *http.Request, p *auth.Principal, body *heartbeatBody) error {
	id, err := heartbeatDeviceID(r, p)
	if err != nil {
		return err
	}
	err = s.store.RecordHeartbeat(r.Context(), p.Tenant, id, body.report())
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound("Device "+id, "id")
	}
	if err != nil {
		return errInternal(err)
	}
	if p.Kind == auth.KindDevice {
		s.tokenDevices.put(ids.Hash(bearer(r)), p)
	}
	s.metrics.heartbeatsByLookup.Inc()
	writeHeartbeatReply(w)
	return nil
}

func writeHeartbeatReply(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(heartbeatReply)
}

// heartbeatReply is the body of every heartbeat's 200, encoded once.
// NOTE: commands and OTA manifests ride on this reply once device commands
// and firmware exist; until then both are empty.
var heartbeatReply = []byte(`{"commands":[],"config_version":0,"ota":null,"status":"ok"}` + "\n")

// heartbeatDeviceID returns the device a heartbeat is for: a device token's
// own device ("me" or its id), or the path's id for a key.
func heartbeatDeviceID(r *http.Request, p *auth.Principal) (string, error) {
	id := r.PathValue("id")
	if p.Kind == auth.KindDevice {
		if id != "me" && id != p.DeviceID {
			return "", errNotFound("Device "+truncate(id, 80), "id")
		}
		return p.DeviceID, nil
	}
	if !ids.Valid(ids.Device, id) {
		return "", errNotFound("Device "+truncate(id, 80), "id")
	}
	return id, nil
}

// maxTokenDevices bounds the device tokens a node remembers, at an
// estimated 300 bytes each. Past it, each new token takes the place of one picked
// at random.
// NOTE: a node serving more active device tokens than this sends the
// heartbeats of the others through the full check, and a larger fleet
// per node would want a larger bound.
const maxTokenDevices = 1 << 16

// tokenDevices remembers, by token hash, the device and project of device
// tokens that passed the full check. It is a hint, not a credential: the
// heartbeat statement checks the token itself.
type tokenDevices struct {
	mu sync.RWMutex
	m  map[string]*auth.Principal
}

func (t *tokenDevices) get(hash string) *auth.Principal {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.m[hash]
}

// put remembers p, keeping only what does not change over a token's life.
func (t *tokenDevices) put(hash string, p *auth.Principal) {
	known := &auth.Principal{Kind: auth.KindDevice, Tenant: p.Tenant, KeyID: p.KeyID, DeviceID: p.DeviceID}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]*auth.Principal)
	}
	if _, ok := t.m[hash]; !ok && len(t.m) >= maxTokenDevices {
		// The Go runtime starts map iteration at a random position.
		for old := range t.m {
			delete(t.m, old)
			break
		}
	}
	t.m[hash] = known
}

func (t *tokenDevices) drop(hash string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, hash)
}
