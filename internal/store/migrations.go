package store

import (
	"context"
	"fmt"
)

// migrations is append-only: a released entry never changes, and a schema
// change is a new entry at the end. Every statement runs on SQLite and on
// PostgreSQL: times are BIGINT unix milliseconds, JSON is TEXT, booleans
// are INTEGER 0 or 1.
var migrations = []string{
	// 1: the schema of the first release.
	`
CREATE TABLE settings (
	name  TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

CREATE TABLE nodes (
	id           TEXT PRIMARY KEY,
	started_at   BIGINT NOT NULL,
	last_seen_at BIGINT NOT NULL
);

CREATE TABLE projects (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
	id           TEXT PRIMARY KEY,
	project_id   TEXT NOT NULL REFERENCES projects(id),
	mode         TEXT NOT NULL,
	restricted   INTEGER NOT NULL,
	scopes       TEXT NOT NULL,
	hint         TEXT NOT NULL,
	name         TEXT NOT NULL,
	secret_hash  TEXT NOT NULL UNIQUE,
	created_at   BIGINT NOT NULL,
	revoked_at   BIGINT,
	last_used_at BIGINT
);
CREATE INDEX api_keys_project ON api_keys(project_id, created_at);

CREATE TABLE end_users (
	id          TEXT PRIMARY KEY,
	project_id  TEXT NOT NULL,
	mode        TEXT NOT NULL,
	external_id TEXT,
	email       TEXT,
	name        TEXT,
	metadata    TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX end_users_external_id ON end_users(project_id, mode, external_id)
	WHERE external_id IS NOT NULL;
CREATE INDEX end_users_list ON end_users(project_id, mode, created_at, id);
CREATE INDEX end_users_email ON end_users(project_id, mode, email);

CREATE TABLE devices (
	id                  TEXT PRIMARY KEY,
	project_id          TEXT NOT NULL,
	mode                TEXT NOT NULL,
	serial_number       TEXT NOT NULL,
	model               TEXT NOT NULL,
	device_type         TEXT,
	firmware_version    TEXT,
	name                TEXT,
	status              TEXT NOT NULL,
	end_user_id         TEXT,
	bound_at            BIGINT,
	binding_generation  INTEGER NOT NULL,
	battery_percent     INTEGER,
	storage_used_mb     INTEGER,
	storage_total_mb    INTEGER,
	signal_strength_dbm INTEGER,
	last_heartbeat_at   BIGINT,
	recording_state     TEXT,
	metadata            TEXT NOT NULL,
	settings            TEXT NOT NULL,
	public_key          TEXT,
	created_at          BIGINT NOT NULL,
	updated_at          BIGINT NOT NULL
);
CREATE UNIQUE INDEX devices_serial ON devices(project_id, mode, serial_number);
CREATE INDEX devices_list ON devices(project_id, mode, created_at, id);
CREATE INDEX devices_end_user ON devices(project_id, mode, end_user_id, created_at, id);
CREATE INDEX devices_status ON devices(project_id, mode, status, created_at, id);

CREATE TABLE device_tokens (
	id            TEXT PRIMARY KEY,
	device_id     TEXT NOT NULL,
	project_id    TEXT NOT NULL,
	mode          TEXT NOT NULL,
	token_hash    TEXT NOT NULL UNIQUE,
	created_at    BIGINT NOT NULL,
	expires_at    BIGINT,
	revoked_at    BIGINT,
	grace_until   BIGINT,
	replaced_by   TEXT,
	first_used_at BIGINT
);
CREATE INDEX device_tokens_device ON device_tokens(device_id);

CREATE TABLE idempotency_keys (
	project_id  TEXT NOT NULL,
	mode        TEXT NOT NULL,
	key         TEXT NOT NULL,
	endpoint    TEXT NOT NULL,
	body_hash   TEXT NOT NULL,
	state       TEXT NOT NULL,
	status      INTEGER,
	response    TEXT,
	reissue     TEXT,
	created_at  BIGINT NOT NULL,
	PRIMARY KEY (project_id, mode, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);

CREATE TABLE recordings (
	id                         TEXT PRIMARY KEY,
	project_id                 TEXT NOT NULL,
	mode                       TEXT NOT NULL,
	device_id                  TEXT,
	end_user_id                TEXT,
	name                       TEXT,
	status                     TEXT NOT NULL,
	source                     TEXT NOT NULL,
	upload_method              TEXT,
	recorded_at                BIGINT,
	started_at                 BIGINT,
	ended_at                   BIGINT,
	duration_ms                BIGINT,
	content_sha256             TEXT,
	content_sha256_verified_at BIGINT,
	uploaded_at                BIGINT,
	transcription_id           TEXT,
	streaming                  INTEGER NOT NULL,
	stream_state               TEXT,
	complete_response          TEXT,
	metadata                   TEXT NOT NULL,
	created_at                 BIGINT NOT NULL,
	updated_at                 BIGINT NOT NULL
);
CREATE INDEX recordings_list ON recordings(project_id, mode, created_at, id);
CREATE INDEX recordings_device ON recordings(project_id, mode, device_id, created_at, id);
CREATE INDEX recordings_end_user ON recordings(project_id, mode, end_user_id, created_at, id);
CREATE INDEX recordings_status ON recordings(project_id, mode, status, created_at, id);

CREATE TABLE media (
	id              TEXT PRIMARY KEY,
	recording_id    TEXT NOT NULL,
	project_id      TEXT NOT NULL,
	mode            TEXT NOT NULL,
	type            TEXT NOT NULL,
	mime_type       TEXT NOT NULL,
	file_size_bytes BIGINT,
	status          TEXT NOT NULL,
	storage_key     TEXT NOT NULL,
	sha256          TEXT,
	duration_ms     BIGINT,
	captured_at     BIGINT,
	url_expires_at  BIGINT NOT NULL,
	created_at      BIGINT NOT NULL,
	uploaded_at     BIGINT
);
CREATE INDEX media_recording ON media(recording_id, created_at, id);
CREATE INDEX media_pending ON media(status, url_expires_at);

CREATE TABLE upload_tokens (
	id           TEXT PRIMARY KEY,
	recording_id TEXT NOT NULL,
	project_id   TEXT NOT NULL,
	mode         TEXT NOT NULL,
	token_hash   TEXT NOT NULL UNIQUE,
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	revoked_at   BIGINT
);
CREATE INDEX upload_tokens_recording ON upload_tokens(recording_id);

CREATE TABLE transcriptions (
	id            TEXT PRIMARY KEY,
	recording_id  TEXT NOT NULL,
	project_id    TEXT NOT NULL,
	mode          TEXT NOT NULL,
	status        TEXT NOT NULL,
	language      TEXT,
	provider      TEXT,
	engine        TEXT,
	diarization   INTEGER NOT NULL,
	text          TEXT,
	segments      TEXT,
	confidence    DOUBLE PRECISION,
	word_count    INTEGER,
	duration_ms   BIGINT,
	error_code    TEXT,
	error_message TEXT,
	attempts      INTEGER NOT NULL,
	created_at    BIGINT NOT NULL,
	updated_at    BIGINT NOT NULL,
	started_at    BIGINT,
	completed_at  BIGINT
);
CREATE INDEX transcriptions_list ON transcriptions(project_id, mode, created_at, id);
CREATE INDEX transcriptions_recording ON transcriptions(project_id, mode, recording_id, created_at, id);

CREATE TABLE project_config (
	project_id TEXT NOT NULL,
	mode       TEXT NOT NULL,
	section    TEXT NOT NULL,
	value      TEXT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (project_id, mode, section)
);

CREATE TABLE events (
	id            TEXT PRIMARY KEY,
	project_id    TEXT NOT NULL,
	mode          TEXT NOT NULL,
	type          TEXT NOT NULL,
	data          TEXT NOT NULL,
	created_at    BIGINT NOT NULL,
	dispatched_at BIGINT
);
CREATE INDEX events_list ON events(project_id, mode, created_at, id);
CREATE INDEX events_undispatched ON events(dispatched_at, created_at);
`,

	// 2: webhook endpoints, their deliveries with each attempt, and the
	// leases that cap concurrent deliveries per endpoint across nodes.
	// Endpoint secrets are stored sealed with AES-GCM (see
	// internal/webhook/secretbox.go), because deliveries are signed with them.
	`
CREATE TABLE webhook_endpoints (
	id                    TEXT PRIMARY KEY,
	project_id            TEXT NOT NULL,
	mode                  TEXT NOT NULL,
	url                   TEXT NOT NULL,
	events                TEXT NOT NULL,
	description           TEXT,
	status                TEXT NOT NULL,
	disabled_reason       TEXT,
	metadata              TEXT NOT NULL,
	secret                TEXT NOT NULL,
	old_secret            TEXT,
	old_secret_expires_at BIGINT,
	failing_since         BIGINT,
	created_at            BIGINT NOT NULL,
	updated_at            BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_list ON webhook_endpoints(project_id, mode, created_at, id);

CREATE TABLE webhook_deliveries (
	id              TEXT PRIMARY KEY,
	project_id      TEXT NOT NULL,
	mode            TEXT NOT NULL,
	endpoint_id     TEXT NOT NULL,
	event_id        TEXT NOT NULL,
	event_type      TEXT NOT NULL,
	status          TEXT NOT NULL,
	attempt_count   INTEGER NOT NULL,
	redeliveries    INTEGER NOT NULL,
	last_attempt_at BIGINT,
	next_attempt_at BIGINT,
	created_at      BIGINT NOT NULL,
	updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries(endpoint_id, event_id);
CREATE INDEX webhook_deliveries_list ON webhook_deliveries(endpoint_id, created_at, id);

CREATE TABLE webhook_attempts (
	id               TEXT PRIMARY KEY,
	delivery_id      TEXT NOT NULL,
	attempted_at     BIGINT NOT NULL,
	status_code      INTEGER,
	duration_ms      BIGINT NOT NULL,
	error            TEXT,
	response_snippet TEXT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, attempted_at, id);

CREATE TABLE webhook_leases (
	endpoint_id TEXT NOT NULL,
	slot        INTEGER NOT NULL,
	holder      TEXT NOT NULL,
	expires_at  BIGINT NOT NULL,
	PRIMARY KEY (endpoint_id, slot)
);
`,

	// 3: the background work an event requires, decided when the event is
	// stored, so a settings change between the event and its dispatch does
	// not change what happens to it. NULL for events stored before.
	`ALTER TABLE events ADD COLUMN work TEXT`,
}

// Migrate applies the migrations the database has not seen yet. It holds
// the dialect's migration lock, so nodes that start together apply each
// migration once.
func (s *Store) Migrate(ctx context.Context) error {
	return s.dialect.WithMigrationLock(ctx, s.db, func() error {
		if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var current int
		row := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`)
		if err := row.Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		for i := current; i < len(migrations); i++ {
			version := i + 1
			err := s.InTx(ctx, func(tx *Store) error {
				if _, err := tx.q.ExecContext(ctx, migrations[i]); err != nil {
					return err
				}
				_, err := tx.exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
					version, s.nowMs())
				return err
			})
			if err != nil {
				return fmt.Errorf("apply migration %d: %w", version, err)
			}
		}
		return nil
	})
}

// SchemaVersion returns the number of applied migrations.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}
