package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
)

// CreateProject stores a new project.
func (s *Store) CreateProject(ctx context.Context, name string) (*model.Project, error) {
	p := &model.Project{ID: ids.New(ids.Project), Name: name, CreatedAt: fromMs(s.nowMs())}
	_, err := s.exec(ctx, `INSERT INTO projects (id, name, created_at) VALUES (?, ?, ?)`,
		p.ID, p.Name, ms(p.CreatedAt))
	if err != nil {
		return nil, fmt.Errorf("create project: %w", err)
	}
	return p, nil
}

// Project returns the project with the given id.
func (s *Store) Project(ctx context.Context, id string) (*model.Project, error) {
	var p model.Project
	var created int64
	err := s.queryRow(ctx, `SELECT id, name, created_at FROM projects WHERE id = ?`, id).
		Scan(&p.ID, &p.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read project: %w", err)
	}
	p.CreatedAt = fromMs(created)
	return &p, nil
}

// Projects returns every project, oldest first.
func (s *Store) Projects(ctx context.Context) ([]*model.Project, error) {
	rows, err := s.query(ctx, `SELECT id, name, created_at FROM projects ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	defer rows.Close()
	var out []*model.Project
	for rows.Next() {
		var p model.Project
		var created int64
		if err := rows.Scan(&p.ID, &p.Name, &created); err != nil {
			return nil, err
		}
		p.CreatedAt = fromMs(created)
		out = append(out, &p)
	}
	return out, rows.Err()
}

// CountProjects returns the number of projects.
func (s *Store) CountProjects(ctx context.Context) (int, error) {
	var n int
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM projects`).Scan(&n)
	return n, err
}

const keyColumns = `id, project_id, mode, restricted, scopes, hint, name, created_at, revoked_at, last_used_at`

func scanKey(sc interface{ Scan(...any) error }) (*model.APIKey, error) {
	var k model.APIKey
	var restricted int
	var scopes string
	var created int64
	var revoked, used sql.NullInt64
	err := sc.Scan(&k.ID, &k.ProjectID, &k.Mode, &restricted, &scopes, &k.Hint, &k.Name,
		&created, &revoked, &used)
	if err != nil {
		return nil, err
	}
	k.Restricted = restricted == 1
	if scopes != "" {
		k.Scopes = strings.Split(scopes, " ")
	}
	k.CreatedAt = fromMs(created)
	k.RevokedAt = fromNullMs(revoked)
	k.LastUsedAt = fromNullMs(used)
	return &k, nil
}

// CreateAPIKey stores a key whose secret hashes to secretHash.
func (s *Store) CreateAPIKey(ctx context.Context, k *model.APIKey, secretHash string) error {
	k.CreatedAt = fromMs(s.nowMs())
	_, err := s.exec(ctx, `INSERT INTO api_keys (`+keyColumns+`, secret_hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)`,
		k.ID, k.ProjectID, k.Mode, boolInt(k.Restricted), strings.Join(k.Scopes, " "), k.Hint, k.Name,
		ms(k.CreatedAt), secretHash)
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	return nil
}

// APIKeyBySecretHash returns the key with that hash, revoked or not.
func (s *Store) APIKeyBySecretHash(ctx context.Context, hash string) (*model.APIKey, error) {
	k, err := scanKey(s.queryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE secret_hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return k, err
}

// APIKey returns the key with the given id.
func (s *Store) APIKey(ctx context.Context, id string) (*model.APIKey, error) {
	k, err := scanKey(s.queryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return k, err
}

// APIKeys returns a project's keys, oldest first.
func (s *Store) APIKeys(ctx context.Context, projectID string) ([]*model.APIKey, error) {
	rows, err := s.query(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE project_id = ?
		ORDER BY created_at, id`, projectID)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	var out []*model.APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeAPIKey marks a key revoked. Revoking twice keeps the first time.
func (s *Store) RevokeAPIKey(ctx context.Context, id string) (*model.APIKey, error) {
	_, err := s.exec(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`,
		s.nowMs(), id)
	if err != nil {
		return nil, fmt.Errorf("revoke api key: %w", err)
	}
	return s.APIKey(ctx, id)
}

// TouchAPIKey records that a key was used now.
func (s *Store) TouchAPIKey(ctx context.Context, id string) error {
	_, err := s.exec(ctx, `UPDATE api_keys SET last_used_at = ? WHERE id = ?`, s.nowMs(), id)
	return err
}
