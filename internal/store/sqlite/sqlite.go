// Package sqlite opens the embedded SQLite database (modernc.org/sqlite,
// pure Go, WAL mode).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/botaserver/bota/internal/store"
)

// Dialect is SQLite's store.Dialect.
type Dialect struct{}

var _ store.Dialect = Dialect{}

// Name returns "sqlite".
func (Dialect) Name() string { return "sqlite" }

// Rebind returns the query unchanged: SQLite takes ? placeholders.
func (Dialect) Rebind(q string) string { return q }

// IsUniqueViolation reports a UNIQUE or PRIMARY KEY constraint failure.
func (Dialect) IsUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code()
	return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// MergeJSON uses json_patch, which replaces arrays whole as the merge of
// the other engines does.
func (Dialect) MergeJSON(target, patch string) string {
	return "json_patch(" + target + ", " + patch + ")"
}

// SingleWriter reports that SQLite runs one write transaction at a time.
func (Dialect) SingleWriter() bool { return true }

// WithMigrationLock runs fn directly: every transaction is BEGIN IMMEDIATE
// (see DSN), which already serializes writers across processes, and each
// migration re-reads the version inside its transaction.
func (Dialect) WithMigrationLock(ctx context.Context, db *sql.DB, fn func() error) error {
	return fn()
}

// DSN returns the connection string for the database file at path.
// Writes take the lock at BEGIN (immediate), so a transaction never fails
// half-way on a lock upgrade; busy_timeout makes writers wait instead of
// failing. synchronous=NORMAL in WAL mode keeps every committed
// transaction across a killed process (not across a power cut).
func DSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

// Open opens (creating if needed) the database file at path.
func Open(path string) (*store.Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database folder: %w", err)
	}
	db, err := sql.Open("sqlite", DSN(path))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// SQLite has one writer at a time; a small pool keeps readers
	// concurrent under WAL without piling up writers on the file lock.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return store.New(db, Dialect{}), nil
}
