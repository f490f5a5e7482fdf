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

// Webhook endpoint and delivery statuses.
const (
	WebhookEnabled  = "enabled"
	WebhookDisabled = "disabled"

	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
)

// WebhookEndpoint is a URL that receives a project's events.
type WebhookEndpoint struct {
	ID string
	model.Tenant
	URL            string
	Events         []string
	Description    *string
	Status         string
	DisabledReason *string
	Metadata       map[string]any
	// Secret is the current signing secret, sealed by the caller.
	Secret string
	// OldSecret is the sealed previous secret, which keeps signing until
	// OldSecretExpiresAt after a rotation with overlap.
	OldSecret          *string
	OldSecretExpiresAt *time.Time
	// FailingSince is the time of the first failed attempt after the last
	// successful one, or nil while deliveries succeed.
	FailingSince *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// WebhookDelivery is one event sent to one endpoint, with its attempts.
type WebhookDelivery struct {
	ID string
	model.Tenant
	EndpointID   string
	EventID      string
	EventType    string
	Status       string
	AttemptCount int
	// Redeliveries counts manual retries; it keys their jobs.
	Redeliveries  int
	LastAttemptAt *time.Time
	// NextAttemptAt is when the scheduled retry runs, or nil when none is
	// scheduled.
	NextAttemptAt *time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
	// Attempts is filled by WebhookDeliveries and WebhookDelivery, oldest
	// first.
	Attempts []WebhookAttempt
}

// WebhookAttempt is the outcome of one HTTP request of a delivery.
type WebhookAttempt struct {
	AttemptedAt time.Time
	// StatusCode is nil when no response arrived.
	StatusCode *int
	DurationMs int64
	// Error is nil for a 2xx response.
	Error           *string
	ResponseSnippet string
}

const webhookEndpointColumns = `id, project_id, mode, url, events, description, status,
	disabled_reason, metadata, secret, old_secret, old_secret_expires_at, failing_since,
	created_at, updated_at`

func scanWebhookEndpoint(sc interface{ Scan(...any) error }) (*WebhookEndpoint, error) {
	var e WebhookEndpoint
	var events, meta string
	var desc, reason, oldSecret sql.NullString
	var oldExpires, failing sql.NullInt64
	var created, updated int64
	err := sc.Scan(&e.ID, &e.ProjectID, &e.Mode, &e.URL, &events, &desc, &e.Status, &reason,
		&meta, &e.Secret, &oldSecret, &oldExpires, &failing, &created, &updated)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(events), &e.Events); err != nil {
		return nil, fmt.Errorf("decode events of webhook endpoint %s: %w", e.ID, err)
	}
	e.Description = fromNullString(desc)
	e.DisabledReason = fromNullString(reason)
	e.Metadata = decodeObject(meta)
	e.OldSecret = fromNullString(oldSecret)
	e.OldSecretExpiresAt = fromNullMs(oldExpires)
	e.FailingSince = fromNullMs(failing)
	e.CreatedAt = fromMs(created)
	e.UpdatedAt = fromMs(updated)
	return &e, nil
}

func encodeEvents(events []string) string {
	if events == nil {
		events = []string{}
	}
	b, err := json.Marshal(events)
	if err != nil {
		return "[]"
	}
	return string(b)
}

// CreateWebhookEndpoint stores a new endpoint. The caller sets e.ID, because
// the sealed secret is bound to it.
func (s *Store) CreateWebhookEndpoint(ctx context.Context, e *WebhookEndpoint) error {
	if e.ID == "" {
		return errors.New("create webhook endpoint: id is not set")
	}
	now := s.nowMs()
	e.CreatedAt, e.UpdatedAt = fromMs(now), fromMs(now)
	if e.Status == "" {
		e.Status = WebhookEnabled
	}
	_, err := s.exec(ctx, `INSERT INTO webhook_endpoints (`+webhookEndpointColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.ProjectID, e.Mode, e.URL, encodeEvents(e.Events), strPtr(e.Description), e.Status,
		strPtr(e.DisabledReason), encodeObject(e.Metadata), e.Secret, strPtr(e.OldSecret),
		msPtr(e.OldSecretExpiresAt), msPtr(e.FailingSince), now, now)
	if err != nil {
		return fmt.Errorf("create webhook endpoint: %w", err)
	}
	return nil
}

// WebhookEndpoint returns the tenant's endpoint with id.
func (s *Store) WebhookEndpoint(ctx context.Context, t model.Tenant, id string) (*WebhookEndpoint, error) {
	e, err := scanWebhookEndpoint(s.queryRow(ctx, `SELECT `+webhookEndpointColumns+`
		FROM webhook_endpoints WHERE id = ? AND project_id = ? AND mode = ?`, id, t.ProjectID, t.Mode))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return e, err
}

// WebhookEndpoints returns one page of the tenant's endpoints, newest first.
func (s *Store) WebhookEndpoints(ctx context.Context, t model.Tenant, p Page) ([]*WebhookEndpoint, bool, error) {
	w := &where{}
	w.add("project_id = ? AND mode = ?", t.ProjectID, t.Mode)
	q, args := listQuery(`SELECT `+webhookEndpointColumns+` FROM webhook_endpoints`, w, p)
	out, err := s.webhookEndpointRows(ctx, q, args...)
	if err != nil {
		return nil, false, err
	}
	out, more := trim(out, p.Limit)
	return out, more, nil
}

// EnabledWebhookEndpoints returns every enabled endpoint of the tenant,
// oldest first, for fanning out an event.
func (s *Store) EnabledWebhookEndpoints(ctx context.Context, t model.Tenant) ([]*WebhookEndpoint, error) {
	return s.webhookEndpointRows(ctx, `SELECT `+webhookEndpointColumns+` FROM webhook_endpoints
		WHERE project_id = ? AND mode = ? AND status = ? ORDER BY created_at, id`,
		t.ProjectID, t.Mode, WebhookEnabled)
}

func (s *Store) webhookEndpointRows(ctx context.Context, q string, args ...any) ([]*WebhookEndpoint, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	defer rows.Close()
	var out []*WebhookEndpoint
	for rows.Next() {
		e, err := scanWebhookEndpoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// UpdateWebhookEndpoint writes the endpoint's editable fields, its status
// and its failure tracking. Secrets change only through
// SetWebhookEndpointSecret.
func (s *Store) UpdateWebhookEndpoint(ctx context.Context, e *WebhookEndpoint) error {
	now := s.nowMs()
	err := s.execOne(ctx, `UPDATE webhook_endpoints SET url = ?, events = ?, description = ?,
		status = ?, disabled_reason = ?, metadata = ?, failing_since = ?, updated_at = ?
		WHERE id = ? AND project_id = ? AND mode = ?`,
		e.URL, encodeEvents(e.Events), strPtr(e.Description), e.Status, strPtr(e.DisabledReason),
		encodeObject(e.Metadata), msPtr(e.FailingSince), now, e.ID, e.ProjectID, e.Mode)
	if err != nil {
		return fmt.Errorf("update webhook endpoint: %w", err)
	}
	e.UpdatedAt = fromMs(now)
	return nil
}

// SetWebhookEndpointSecret replaces the endpoint's sealed secrets.
func (s *Store) SetWebhookEndpointSecret(ctx context.Context, t model.Tenant, id, secret string,
	oldSecret *string, oldExpires *time.Time) error {
	err := s.execOne(ctx, `UPDATE webhook_endpoints SET secret = ?, old_secret = ?,
		old_secret_expires_at = ?, updated_at = ? WHERE id = ? AND project_id = ? AND mode = ?`,
		secret, strPtr(oldSecret), msPtr(oldExpires), s.nowMs(), id, t.ProjectID, t.Mode)
	if err != nil {
		return fmt.Errorf("set webhook endpoint secret: %w", err)
	}
	return nil
}

// DeleteWebhookEndpoint removes the endpoint with its deliveries, their
// attempts and its leases. Jobs of its deliveries find no delivery and end.
func (s *Store) DeleteWebhookEndpoint(ctx context.Context, t model.Tenant, id string) error {
	return s.InTx(ctx, func(tx *Store) error {
		if err := tx.execOne(ctx, `DELETE FROM webhook_endpoints WHERE id = ? AND project_id = ?
			AND mode = ?`, id, t.ProjectID, t.Mode); err != nil {
			return err
		}
		if _, err := tx.exec(ctx, `DELETE FROM webhook_attempts WHERE delivery_id IN
			(SELECT id FROM webhook_deliveries WHERE endpoint_id = ?)`, id); err != nil {
			return fmt.Errorf("delete webhook attempts: %w", err)
		}
		if _, err := tx.exec(ctx, `DELETE FROM webhook_deliveries WHERE endpoint_id = ?`, id); err != nil {
			return fmt.Errorf("delete webhook deliveries: %w", err)
		}
		if _, err := tx.exec(ctx, `DELETE FROM webhook_leases WHERE endpoint_id = ?`, id); err != nil {
			return fmt.Errorf("delete webhook leases: %w", err)
		}
		return nil
	})
}

// RecordWebhookEndpointResult updates the endpoint's failure tracking
// after an attempt at now: a success clears it, and a failure starts it
// unless it already runs. It returns the endpoint's failing-since time,
// nil after a success.
func (s *Store) RecordWebhookEndpointResult(ctx context.Context, id string, ok bool, now time.Time) (*time.Time, error) {
	if ok {
		_, err := s.exec(ctx, `UPDATE webhook_endpoints SET failing_since = NULL
			WHERE id = ? AND failing_since IS NOT NULL`, id)
		if err != nil {
			return nil, fmt.Errorf("clear webhook endpoint failure: %w", err)
		}
		return nil, nil
	}
	if _, err := s.exec(ctx, `UPDATE webhook_endpoints SET failing_since = ?
		WHERE id = ? AND failing_since IS NULL`, ms(now), id); err != nil {
		return nil, fmt.Errorf("record webhook endpoint failure: %w", err)
	}
	var since sql.NullInt64
	err := s.queryRow(ctx, `SELECT failing_since FROM webhook_endpoints WHERE id = ?`, id).Scan(&since)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read webhook endpoint failure: %w", err)
	}
	return fromNullMs(since), nil
}

// DisableWebhookEndpoint sets the endpoint disabled with reason, unless it
// is disabled already.
func (s *Store) DisableWebhookEndpoint(ctx context.Context, id, reason string) error {
	_, err := s.exec(ctx, `UPDATE webhook_endpoints SET status = ?, disabled_reason = ?,
		updated_at = ? WHERE id = ? AND status = ?`,
		WebhookDisabled, reason, s.nowMs(), id, WebhookEnabled)
	if err != nil {
		return fmt.Errorf("disable webhook endpoint: %w", err)
	}
	return nil
}

const webhookDeliveryColumns = `id, project_id, mode, endpoint_id, event_id, event_type, status,
	attempt_count, redeliveries, last_attempt_at, next_attempt_at, created_at, updated_at`

func scanWebhookDelivery(sc interface{ Scan(...any) error }) (*WebhookDelivery, error) {
	var d WebhookDelivery
	var last, next sql.NullInt64
	var created, updated int64
	err := sc.Scan(&d.ID, &d.ProjectID, &d.Mode, &d.EndpointID, &d.EventID, &d.EventType,
		&d.Status, &d.AttemptCount, &d.Redeliveries, &last, &next, &created, &updated)
	if err != nil {
		return nil, err
	}
	d.LastAttemptAt = fromNullMs(last)
	d.NextAttemptAt = fromNullMs(next)
	d.CreatedAt = fromMs(created)
	d.UpdatedAt = fromMs(updated)
	return &d, nil
}

// CreateWebhookDelivery stores a pending delivery of an event to an
// endpoint. It returns false, and stores nothing, when that endpoint
// already has a delivery of that event, so fanning out an event twice adds
// nothing.
func (s *Store) CreateWebhookDelivery(ctx context.Context, d *WebhookDelivery) (bool, error) {
	d.ID = ids.New(ids.Delivery)
	now := s.nowMs()
	d.CreatedAt, d.UpdatedAt = fromMs(now), fromMs(now)
	d.Status = DeliveryPending
	res, err := s.exec(ctx, `INSERT INTO webhook_deliveries (`+webhookDeliveryColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, NULL, NULL, ?, ?)
		ON CONFLICT (endpoint_id, event_id) DO NOTHING`,
		d.ID, d.ProjectID, d.Mode, d.EndpointID, d.EventID, d.EventType, d.Status, now, now)
	if err != nil {
		return false, fmt.Errorf("create webhook delivery: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("create webhook delivery: %w", err)
	}
	return n == 1, nil
}

// WebhookDeliveryByID returns a delivery of any tenant, without its
// attempts, for the worker that sends it.
func (s *Store) WebhookDeliveryByID(ctx context.Context, id string) (*WebhookDelivery, error) {
	d, err := scanWebhookDelivery(s.queryRow(ctx, `SELECT `+webhookDeliveryColumns+`
		FROM webhook_deliveries WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return d, err
}

// WebhookDelivery returns the tenant's delivery with id of the endpoint,
// with its attempts.
func (s *Store) WebhookDelivery(ctx context.Context, t model.Tenant, endpointID, id string) (*WebhookDelivery, error) {
	d, err := scanWebhookDelivery(s.queryRow(ctx, `SELECT `+webhookDeliveryColumns+`
		FROM webhook_deliveries WHERE id = ? AND endpoint_id = ? AND project_id = ? AND mode = ?`,
		id, endpointID, t.ProjectID, t.Mode))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := s.loadWebhookAttempts(ctx, []*WebhookDelivery{d}); err != nil {
		return nil, err
	}
	return d, nil
}

// WebhookDeliveries returns one page of an endpoint's deliveries, newest
// first, with their attempts. status, when not nil, keeps only deliveries
// in that status.
func (s *Store) WebhookDeliveries(ctx context.Context, t model.Tenant, endpointID string,
	status *string, p Page) ([]*WebhookDelivery, bool, error) {
	w := &where{}
	w.add("endpoint_id = ? AND project_id = ? AND mode = ?", endpointID, t.ProjectID, t.Mode)
	if status != nil {
		w.add("status = ?", *status)
	}
	q, args := listQuery(`SELECT `+webhookDeliveryColumns+` FROM webhook_deliveries`, w, p)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list webhook deliveries: %w", err)
	}
	var out []*WebhookDelivery
	for rows.Next() {
		d, err := scanWebhookDelivery(rows)
		if err != nil {
			rows.Close()
			return nil, false, err
		}
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	out, more := trim(out, p.Limit)
	if err := s.loadWebhookAttempts(ctx, out); err != nil {
		return nil, false, err
	}
	return out, more, nil
}

// loadWebhookAttempts fills the Attempts of each delivery with one query.
func (s *Store) loadWebhookAttempts(ctx context.Context, ds []*WebhookDelivery) error {
	if len(ds) == 0 {
		return nil
	}
	byID := make(map[string]*WebhookDelivery, len(ds))
	args := make([]any, 0, len(ds))
	for _, d := range ds {
		d.Attempts = []WebhookAttempt{}
		byID[d.ID] = d
		args = append(args, d.ID)
	}
	rows, err := s.queryUncached(ctx, `SELECT delivery_id, attempted_at, status_code, duration_ms, error,
		response_snippet FROM webhook_attempts WHERE delivery_id IN (`+placeholders(len(ds))+`)
		ORDER BY attempted_at, id`, args...)
	if err != nil {
		return fmt.Errorf("list webhook attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var deliveryID string
		var at int64
		var code sql.NullInt64
		var msg sql.NullString
		var a WebhookAttempt
		if err := rows.Scan(&deliveryID, &at, &code, &a.DurationMs, &msg, &a.ResponseSnippet); err != nil {
			return err
		}
		a.AttemptedAt = fromMs(at)
		a.StatusCode = fromNullInt(code)
		a.Error = fromNullString(msg)
		if d := byID[deliveryID]; d != nil {
			d.Attempts = append(d.Attempts, a)
		}
	}
	return rows.Err()
}

// AddWebhookAttempt stores an attempt of the delivery and sets the
// delivery's status and next scheduled attempt (nil when none).
func (s *Store) AddWebhookAttempt(ctx context.Context, deliveryID string, a WebhookAttempt,
	status string, next *time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO webhook_attempts (id, delivery_id, attempted_at, status_code,
		duration_ms, error, response_snippet) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		ids.New("wha"), deliveryID, ms(a.AttemptedAt), intPtr(a.StatusCode), a.DurationMs,
		strPtr(a.Error), a.ResponseSnippet)
	if err != nil {
		return fmt.Errorf("store webhook attempt: %w", err)
	}
	err = s.execOne(ctx, `UPDATE webhook_deliveries SET status = ?, attempt_count = attempt_count + 1,
		last_attempt_at = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?`,
		status, ms(a.AttemptedAt), msPtr(next), s.nowMs(), deliveryID)
	if err != nil {
		return fmt.Errorf("update webhook delivery: %w", err)
	}
	return nil
}

// SetWebhookDeliveryStatus sets the delivery's status and next scheduled
// attempt without recording an attempt.
func (s *Store) SetWebhookDeliveryStatus(ctx context.Context, id, status string, next *time.Time) error {
	err := s.execOne(ctx, `UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?,
		updated_at = ? WHERE id = ?`, status, msPtr(next), s.nowMs(), id)
	if err != nil {
		return fmt.Errorf("set webhook delivery status: %w", err)
	}
	return nil
}

// StartWebhookRedelivery marks the delivery pending for a manual retry and
// returns its new redelivery number, which keys the retry's job.
func (s *Store) StartWebhookRedelivery(ctx context.Context, id string) (int, error) {
	err := s.execOne(ctx, `UPDATE webhook_deliveries SET status = ?,
		redeliveries = redeliveries + 1, updated_at = ? WHERE id = ?`, DeliveryPending, s.nowMs(), id)
	if err != nil {
		return 0, fmt.Errorf("start webhook redelivery: %w", err)
	}
	var n int
	if err := s.queryRow(ctx, `SELECT redeliveries FROM webhook_deliveries WHERE id = ?`, id).Scan(&n); err != nil {
		return 0, fmt.Errorf("read webhook redeliveries: %w", err)
	}
	return n, nil
}

// AcquireWebhookLease takes a free or expired slot of the endpoint's
// concurrency limit for holder until the given time. It returns the slot,
// or ok=false when all limit slots are held. Each slot is one row, so the
// limit holds across every node of the database.
func (s *Store) AcquireWebhookLease(ctx context.Context, endpointID string, limit int,
	holder string, until time.Time) (slot int, ok bool, err error) {
	now := s.nowMs()
	for slot := range limit {
		res, err := s.exec(ctx, `INSERT INTO webhook_leases (endpoint_id, slot, holder, expires_at)
			VALUES (?, ?, ?, ?) ON CONFLICT (endpoint_id, slot) DO UPDATE
			SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE webhook_leases.expires_at < ?`, endpointID, slot, holder, ms(until), now)
		if err != nil {
			return 0, false, fmt.Errorf("acquire webhook lease: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, false, fmt.Errorf("acquire webhook lease: %w", err)
		}
		if n == 1 {
			return slot, true, nil
		}
	}
	return 0, false, nil
}

// ReleaseWebhookLease frees the slot if holder still holds it.
func (s *Store) ReleaseWebhookLease(ctx context.Context, endpointID string, slot int, holder string) error {
	_, err := s.exec(ctx, `DELETE FROM webhook_leases WHERE endpoint_id = ? AND slot = ? AND holder = ?`,
		endpointID, slot, holder)
	if err != nil {
		return fmt.Errorf("release webhook lease: %w", err)
	}
	return nil
}

// ClearWebhookLeases frees every lease. Only a process that owns the
// database alone (a server on its SQLite file) may call it, at start, to
// drop the leases a crash left behind.
func (s *Store) ClearWebhookLeases(ctx context.Context) (int64, error) {
	res, err := s.exec(ctx, `DELETE FROM webhook_leases`)
	if err != nil {
		return 0, fmt.Errorf("clear webhook leases: %w", err)
	}
	return res.RowsAffected()
}

// SortKey returns the endpoint's position in lists.
func (e *WebhookEndpoint) SortKey() (time.Time, string) { return e.CreatedAt, e.ID }

// SortKey returns the delivery's position in lists.
func (d *WebhookDelivery) SortKey() (time.Time, string) { return d.CreatedAt, d.ID }
