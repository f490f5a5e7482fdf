package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
)

// ErrAlreadyBound is returned when binding a device bound to another end user.
var ErrAlreadyBound = errors.New("store: device bound to another end user")

const deviceColumns = `id, project_id, mode, serial_number, model, device_type, firmware_version, name,
	status, end_user_id, bound_at, binding_generation, battery_percent, storage_used_mb,
	storage_total_mb, signal_strength_dbm, last_heartbeat_at, recording_state, metadata, settings,
	public_key, created_at, updated_at`

func scanDevice(sc interface{ Scan(...any) error }) (*model.Device, error) {
	var d model.Device
	var devType, fw, name, endUser, state, pk sql.NullString
	var bound, heartbeat sql.NullInt64
	var battery, used, total, signal sql.NullInt64
	var meta, settings string
	var created, updated int64
	err := sc.Scan(&d.ID, &d.ProjectID, &d.Mode, &d.SerialNumber, &d.Model, &devType, &fw, &name,
		&d.Status, &endUser, &bound, &d.BindingGeneration, &battery, &used, &total, &signal,
		&heartbeat, &state, &meta, &settings, &pk, &created, &updated)
	if err != nil {
		return nil, err
	}
	d.DeviceType = fromNullString(devType)
	d.FirmwareVersion = fromNullString(fw)
	d.Name = fromNullString(name)
	d.EndUserID = fromNullString(endUser)
	d.BoundAt = fromNullMs(bound)
	d.BatteryPercent = fromNullInt(battery)
	d.StorageUsedMB = fromNullInt(used)
	d.StorageTotalMB = fromNullInt(total)
	d.SignalStrengthDBM = fromNullInt(signal)
	d.LastHeartbeatAt = fromNullMs(heartbeat)
	if state.Valid {
		d.RecordingState = json.RawMessage(state.String)
	}
	d.Metadata = decodeObject(meta)
	d.Settings = decodeObject(settings)
	d.PublicKey = fromNullString(pk)
	d.CreatedAt = fromMs(created)
	d.UpdatedAt = fromMs(updated)
	return &d, nil
}

// RegisterDevice stores d unless the tenant already has a device with its
// serial number. It returns the stored device and whether it is new.
func (s *Store) RegisterDevice(ctx context.Context, d *model.Device) (*model.Device, bool, error) {
	now := s.nowMs()
	id := ids.New(ids.Device)
	res, err := s.exec(ctx, `INSERT INTO devices (`+deviceColumns+`) VALUES
		(?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, ?, ?, NULL, ?, ?)
		ON CONFLICT (project_id, mode, serial_number) DO NOTHING`,
		id, d.ProjectID, d.Mode, d.SerialNumber, d.Model, strPtr(d.DeviceType), strPtr(d.FirmwareVersion),
		strPtr(d.Name), model.DeviceUnbound, encodeObject(d.Metadata), encodeObject(d.Settings), now, now)
	if err != nil {
		return nil, false, fmt.Errorf("register device: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, false, err
	}
	stored, err := s.DeviceBySerial(ctx, d.Tenant, d.SerialNumber)
	if err != nil {
		return nil, false, err
	}
	return stored, n == 1, nil
}

// DeviceBySerial returns the tenant's device with the serial number.
func (s *Store) DeviceBySerial(ctx context.Context, t model.Tenant, serial string) (*model.Device, error) {
	d, err := scanDevice(s.queryRow(ctx, `SELECT `+deviceColumns+` FROM devices
		WHERE project_id = ? AND mode = ? AND serial_number = ?`, t.ProjectID, t.Mode, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return d, err
}

// Device returns the tenant's device with id.
func (s *Store) Device(ctx context.Context, t model.Tenant, id string) (*model.Device, error) {
	d, err := scanDevice(s.queryRow(ctx, `SELECT `+deviceColumns+` FROM devices
		WHERE id = ? AND project_id = ? AND mode = ?`, id, t.ProjectID, t.Mode))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return d, err
}

// DeviceFilter narrows a list of devices.
type DeviceFilter struct {
	Status       *string
	EndUserID    *string
	Model        *string
	SerialNumber *string
}

// Devices returns one page of the tenant's devices, newest first.
func (s *Store) Devices(ctx context.Context, t model.Tenant, f DeviceFilter, p Page) ([]*model.Device, bool, error) {
	w := &where{}
	w.add("project_id = ? AND mode = ?", t.ProjectID, t.Mode)
	if f.Status != nil {
		w.add("status = ?", *f.Status)
	}
	if f.EndUserID != nil {
		w.add("end_user_id = ?", *f.EndUserID)
	}
	if f.Model != nil {
		w.add("model = ?", *f.Model)
	}
	if f.SerialNumber != nil {
		w.add("serial_number = ?", *f.SerialNumber)
	}
	q, args := listQuery(`SELECT `+deviceColumns+` FROM devices`, w, p)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []*model.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, false, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	out, more := trim(out, p.Limit)
	return out, more, nil
}

// UpdateDevice writes the device's editable fields.
func (s *Store) UpdateDevice(ctx context.Context, d *model.Device) error {
	now := s.nowMs()
	err := s.execOne(ctx, `UPDATE devices SET name = ?, firmware_version = ?, metadata = ?, settings = ?,
		updated_at = ? WHERE id = ? AND project_id = ? AND mode = ?`,
		strPtr(d.Name), strPtr(d.FirmwareVersion), encodeObject(d.Metadata), encodeObject(d.Settings),
		now, d.ID, d.ProjectID, d.Mode)
	if err != nil {
		return fmt.Errorf("update device: %w", err)
	}
	d.UpdatedAt = fromMs(now)
	return nil
}

// DeleteDevice removes the device and revokes its tokens. Its recordings
// stay.
func (s *Store) DeleteDevice(ctx context.Context, t model.Tenant, id string) error {
	if err := s.execOne(ctx, `DELETE FROM devices WHERE id = ? AND project_id = ? AND mode = ?`,
		id, t.ProjectID, t.Mode); err != nil {
		return err
	}
	_, err := s.exec(ctx, `UPDATE device_tokens SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL`,
		s.nowMs(), id)
	return err
}

// BindDevice binds the device to the end user and issues a token whose
// secret hashes to tokenHash; every earlier token of the device is revoked.
// Binding to the end user it is already bound to re-issues the token.
// Call it inside InTx.
func (s *Store) BindDevice(ctx context.Context, t model.Tenant, id, endUserID, tokenHash string, publicKey *string, tokenTTL time.Duration) (*model.Device, error) {
	if err := s.lockDevice(ctx, t, id); err != nil {
		return nil, err
	}
	d, err := s.Device(ctx, t, id)
	if err != nil {
		return nil, err
	}
	if d.Status == model.DeviceBound && d.EndUserID != nil && *d.EndUserID != endUserID {
		return nil, ErrAlreadyBound
	}
	now := s.nowMs()
	if d.Status != model.DeviceBound {
		_, err = s.exec(ctx, `UPDATE devices SET status = ?, end_user_id = ?, bound_at = ?,
			binding_generation = binding_generation + 1, updated_at = ? WHERE id = ?`,
			model.DeviceBound, endUserID, now, now, id)
		if err != nil {
			return nil, fmt.Errorf("bind device: %w", err)
		}
	}
	if publicKey != nil {
		if _, err := s.exec(ctx, `UPDATE devices SET public_key = ? WHERE id = ?`, *publicKey, id); err != nil {
			return nil, fmt.Errorf("store device key: %w", err)
		}
	}
	if err := s.issueDeviceToken(ctx, d, tokenHash, tokenTTL, ""); err != nil {
		return nil, err
	}
	return s.Device(ctx, t, id)
}

// lockDevice takes the device row's write lock for the rest of the
// transaction. On PostgreSQL (READ COMMITTED) two binds or refreshes of one
// device would otherwise both read it unbound and both succeed. SQLite's
// BEGIN IMMEDIATE already runs writers one at a time.
func (s *Store) lockDevice(ctx context.Context, t model.Tenant, id string) error {
	_, err := s.exec(ctx, `UPDATE devices SET updated_at = updated_at WHERE id = ? AND project_id = ? AND mode = ?`,
		id, t.ProjectID, t.Mode)
	if err != nil {
		return fmt.Errorf("lock device: %w", err)
	}
	return nil
}

// ReissueDeviceToken revokes every token of a bound device and issues a new
// one. It is ErrConflict when the device is not bound. Call it inside InTx,
// so that an unbind cannot come between the check and the new token.
func (s *Store) ReissueDeviceToken(ctx context.Context, t model.Tenant, id, tokenHash string, tokenTTL time.Duration) (*model.Device, error) {
	if err := s.lockDevice(ctx, t, id); err != nil {
		return nil, err
	}
	d, err := s.Device(ctx, t, id)
	if err != nil {
		return nil, err
	}
	if d.Status != model.DeviceBound {
		return nil, ErrConflict
	}
	if err := s.issueDeviceToken(ctx, d, tokenHash, tokenTTL, ""); err != nil {
		return nil, err
	}
	return d, nil
}

// issueDeviceToken stores a new token for d. Every other live token is
// revoked at once, except keep, which stays valid for the refresh grace
// period or until the new token is first used.
func (s *Store) issueDeviceToken(ctx context.Context, d *model.Device, hash string, ttl time.Duration, keep string) error {
	now := s.nowMs()
	tokenID := ids.New(ids.DeviceToken)
	var expires any
	if ttl > 0 {
		expires = now + ttl.Milliseconds()
	}
	if _, err := s.exec(ctx, `UPDATE device_tokens SET revoked_at = ?
		WHERE device_id = ? AND revoked_at IS NULL AND id <> ?`, now, d.ID, keep); err != nil {
		return fmt.Errorf("revoke device tokens: %w", err)
	}
	if keep != "" {
		grace := now + DeviceTokenGrace.Milliseconds()
		if _, err := s.exec(ctx, `UPDATE device_tokens SET replaced_by = ?,
			grace_until = CASE WHEN grace_until IS NULL OR grace_until > ? THEN ? ELSE grace_until END
			WHERE id = ?`, tokenID, grace, grace, keep); err != nil {
			return fmt.Errorf("start token grace period: %w", err)
		}
	}
	_, err := s.exec(ctx, `INSERT INTO device_tokens (id, device_id, project_id, mode, token_hash,
		created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		tokenID, d.ID, d.ProjectID, d.Mode, hash, now, expires)
	if err != nil {
		return fmt.Errorf("store device token: %w", err)
	}
	return nil
}

// DeviceTokenGrace is how long a refreshed token stays valid when the new
// one is not used, so a device that lost the refresh response over a bad
// link is not locked out.
const DeviceTokenGrace = 10 * time.Minute

// RefreshDeviceToken issues a new token for the device of the current
// token; the current one enters its grace period. Call it inside InTx.
func (s *Store) RefreshDeviceToken(ctx context.Context, current *model.DeviceToken, newHash string, ttl time.Duration) (*model.Device, error) {
	if err := s.lockDevice(ctx, current.Tenant, current.DeviceID); err != nil {
		return nil, err
	}
	d, err := s.Device(ctx, current.Tenant, current.DeviceID)
	if err != nil {
		return nil, err
	}
	if err := s.issueDeviceToken(ctx, d, newHash, ttl, current.ID); err != nil {
		return nil, err
	}
	return d, nil
}

// UnbindDevice unbinds the device and revokes its tokens. Unbinding an
// unbound device changes nothing.
func (s *Store) UnbindDevice(ctx context.Context, t model.Tenant, id string) (*model.Device, error) {
	d, err := s.Device(ctx, t, id)
	if err != nil {
		return nil, err
	}
	if d.Status != model.DeviceBound {
		return d, nil
	}
	now := s.nowMs()
	if _, err := s.exec(ctx, `UPDATE devices SET status = ?, end_user_id = NULL, bound_at = NULL,
		updated_at = ? WHERE id = ?`, model.DeviceUnbound, now, id); err != nil {
		return nil, fmt.Errorf("unbind device: %w", err)
	}
	if _, err := s.exec(ctx, `UPDATE device_tokens SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL`,
		now, id); err != nil {
		return nil, fmt.Errorf("revoke device tokens: %w", err)
	}
	return s.Device(ctx, t, id)
}

// DeviceTokenByHash returns the token with that hash if it is usable now:
// not revoked, not expired, and not past its grace period. The first use of
// a token revokes the token it replaced.
func (s *Store) DeviceTokenByHash(ctx context.Context, hash string) (*model.DeviceToken, error) {
	r := &tokenRead{hash: hash}
	if s.tokenReads != nil {
		if err := s.tokenReads.do(ctx, r); err != nil {
			return nil, fmt.Errorf("read device token: %w", err)
		}
	} else {
		s.readTokens(ctx, []*tokenRead{r})
	}
	if r.err != nil {
		return nil, fmt.Errorf("read device token: %w", r.err)
	}
	if !r.found {
		return nil, ErrNotFound
	}
	tok, expires, revoked, grace, firstUsed := r.tok, r.expires, r.revoked, r.grace, r.firstUsed
	now := s.nowMs()
	// usableToken expresses the same condition in SQL.
	if revoked.Valid || (expires.Valid && now >= expires.Int64) || (grace.Valid && now >= grace.Int64) {
		return nil, ErrNotFound
	}
	tok.CreatedAt = fromMs(r.created)
	tok.ExpiresAt = fromNullMs(expires)
	tok.GraceUntil = fromNullMs(grace)
	tok.ReplacedBy = fromNullString(r.replaced)
	tok.FirstUsedAt = fromNullMs(firstUsed)
	if !firstUsed.Valid {
		if _, err := s.exec(ctx, `UPDATE device_tokens SET first_used_at = ? WHERE id = ? AND first_used_at IS NULL`,
			now, tok.ID); err != nil {
			return nil, fmt.Errorf("record token use: %w", err)
		}
		if _, err := s.exec(ctx, `UPDATE device_tokens SET revoked_at = ?
			WHERE replaced_by = ? AND revoked_at IS NULL`, now, tok.ID); err != nil {
			return nil, fmt.Errorf("revoke replaced token: %w", err)
		}
	}
	return &tok, nil
}

// usableToken returns the SQL condition that the device token row t is
// usable at the time now (an SQL expression in milliseconds) and was used
// before: the condition DeviceTokenByHash checks in Go, plus the first use.
func usableToken(t, now string) string {
	return t + ".revoked_at IS NULL AND " + t + ".first_used_at IS NOT NULL AND (" +
		t + ".expires_at IS NULL OR " + t + ".expires_at > " + now + ") AND (" +
		t + ".grace_until IS NULL OR " + t + ".grace_until > " + now + ")"
}

// Heartbeat is a device's report. Nil fields leave the stored values as
// they are.
type Heartbeat struct {
	BatteryPercent    *int
	StorageUsedMB     *int
	StorageTotalMB    *int
	SignalStrengthDBM *int
	FirmwareVersion   *string
	Name              *string
	// StatePatch is the JSON object of the recording_state fields the
	// heartbeat reports, merged key by key into the stored one. Nil leaves
	// recording_state as it is.
	StatePatch json.RawMessage
}

// emptyRecordingState is the recording_state a device's first report
// merges into, as an SQL literal.
const emptyRecordingState = `'{"device_state":null,"pending_recordings":null,"flags":null,"connection_type":[]}'`

// RecordHeartbeat stores a heartbeat. It is ErrNotFound when the tenant
// has no such device.
func (s *Store) RecordHeartbeat(ctx context.Context, t model.Tenant, id string, h Heartbeat) error {
	return s.recordHeartbeat(ctx, &heartbeatCall{tenant: t, id: id, h: h, now: s.nowMs()})
}

// RecordTokenHeartbeat stores a heartbeat sent with the device token whose
// hash is tokenHash, checking the token in the same statement: it must be
// usable now, already used once (DeviceTokenByHash records the first use),
// and belong to the device. It is ErrNotFound when the tenant has no such
// device or the token does not pass, and the caller then finds out which
// through DeviceTokenByHash. A device's heartbeat thus costs one statement
// instead of a token read and an update.
func (s *Store) RecordTokenHeartbeat(ctx context.Context, t model.Tenant, id, tokenHash string, h Heartbeat) error {
	if tokenHash == "" {
		return ErrNotFound
	}
	return s.recordHeartbeat(ctx, &heartbeatCall{tenant: t, id: id, h: h, now: s.nowMs(), token: tokenHash})
}

func (s *Store) recordHeartbeat(ctx context.Context, c *heartbeatCall) error {
	if s.heartbeats != nil {
		if err := s.heartbeats.do(ctx, c); err != nil {
			return fmt.Errorf("record heartbeat: %w", err)
		}
	} else {
		c.err = s.updateHeartbeats(ctx, []*heartbeatCall{c})
	}
	if c.err != nil {
		return fmt.Errorf("record heartbeat: %w", c.err)
	}
	if !c.found {
		return ErrNotFound
	}
	return nil
}

// DeviceStats counts the tenant's devices.
type DeviceStats struct {
	Online      int
	LowBattery  int
	StorageFull int
	Total       int
}

// FleetStats returns device counts; a device is online when its last
// heartbeat is newer than onlineSince.
func (s *Store) FleetStats(ctx context.Context, t model.Tenant, onlineSince time.Time) (DeviceStats, error) {
	var st DeviceStats
	err := s.queryRow(ctx, `SELECT COUNT(*),
		COALESCE(SUM(CASE WHEN last_heartbeat_at >= ? THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN battery_percent < 20 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN storage_total_mb > 0 AND storage_used_mb * 100 >= storage_total_mb * 95
			THEN 1 ELSE 0 END), 0)
		FROM devices WHERE project_id = ? AND mode = ?`, ms(onlineSince), t.ProjectID, t.Mode).
		Scan(&st.Total, &st.Online, &st.LowBattery, &st.StorageFull)
	if err != nil {
		return st, fmt.Errorf("count devices: %w", err)
	}
	return st, nil
}
