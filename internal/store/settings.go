package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Setting returns the named server setting, or ErrNotFound.
func (s *Store) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := s.queryRow(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return v, err
}

// InitSetting stores value under name unless a value is already there, and
// returns the stored value. Nodes that start together agree on one value.
func (s *Store) InitSetting(ctx context.Context, name, value string) (string, error) {
	_, err := s.exec(ctx, `INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
		name, value)
	if err != nil {
		return "", fmt.Errorf("store setting %s: %w", name, err)
	}
	return s.Setting(ctx, name)
}

// TouchNode records that node id is alive and returns how many nodes were
// seen since the given unix milliseconds.
func (s *Store) TouchNode(ctx context.Context, id string, startedAtMs, aliveSinceMs int64) (int, error) {
	now := s.nowMs()
	_, err := s.exec(ctx, `INSERT INTO nodes (id, started_at, last_seen_at) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at`, id, startedAtMs, now)
	if err != nil {
		return 0, fmt.Errorf("record node: %w", err)
	}
	var n int
	err = s.queryRow(ctx, `SELECT COUNT(*) FROM nodes WHERE last_seen_at >= ?`, aliveSinceMs).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count nodes: %w", err)
	}
	if _, err := s.exec(ctx, `DELETE FROM nodes WHERE last_seen_at < ?`, now-24*3600*1000); err != nil {
		return n, fmt.Errorf("remove old nodes: %w", err)
	}
	return n, nil
}

// AliveNodes returns the ids of nodes seen since the given time.
func (s *Store) AliveNodes(ctx context.Context, since int64) ([]string, error) {
	rows, err := s.query(ctx, `SELECT id FROM nodes WHERE last_seen_at >= ?`, since)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
