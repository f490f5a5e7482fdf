// Package postgres opens a PostgreSQL database through pgx.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/botaserver/bota/internal/store"
)

// migrationLockID is the pg_advisory_lock key held while migrating.
const migrationLockID = 0x626f7461 // "bota"

// Dialect is PostgreSQL's store.Dialect.
type Dialect struct{}

var _ store.Dialect = Dialect{}

// Name returns "postgres".
func (Dialect) Name() string { return "postgres" }

// Rebind turns ? placeholders into $1, $2, ... The shared queries hold no
// ? inside string literals.
func (Dialect) Rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// IsUniqueViolation reports SQLSTATE 23505.
func (Dialect) IsUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// MergeJSON concatenates the two as jsonb, which sets the patch's
// top-level keys over the target's.
func (Dialect) MergeJSON(target, patch string) string {
	return "CAST(CAST(" + target + " AS jsonb) || CAST(" + patch + " AS jsonb) AS TEXT)"
}

// ArrayParams reports that PostgreSQL takes arrays as parameters.
func (Dialect) ArrayParams() bool { return true }

// WithMigrationLock holds a session advisory lock on one connection while
// fn runs, so nodes starting together migrate one after the other.
func (Dialect) WithMigrationLock(ctx context.Context, db *sql.DB, fn func() error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLockID); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLockID)
	return fn()
}

// Open connects to the database at url. The pool is returned too, for
// parts (the job queue) that speak pgx directly.
func Open(ctx context.Context, url string) (*store.Store, *pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, nil, fmt.Errorf("parse database url: %w", err)
	}
	if cfg.MaxConns < 20 {
		cfg.MaxConns = 20
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("connect to postgres: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	return store.New(db, Dialect{}), pool, nil
}
