// Package store keeps every record of the server in one SQL database.
//
// The SQL is shared: it is written once with ? placeholders in the subset
// that SQLite and PostgreSQL both accept (BIGINT unix milliseconds for
// times, TEXT for JSON, partial unique indexes, ON CONFLICT, RETURNING).
// What differs between the two engines is behind the Dialect interface,
// implemented in the sqlite and postgres packages.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Errors returned by store methods.
var (
	ErrNotFound = errors.New("store: not found")
	// ErrConflict is returned when a unique constraint rejects a write.
	ErrConflict = errors.New("store: conflict")
)

// Dialect is the part of the SQL engines that differs between them.
type Dialect interface {
	// Name is "sqlite" or "postgres".
	Name() string
	// Rebind rewrites ? placeholders into the engine's form.
	Rebind(query string) string
	// IsUniqueViolation reports whether err is a unique-constraint failure.
	IsUniqueViolation(err error) bool
	// WithMigrationLock runs fn while holding a lock that keeps other
	// processes from migrating the same database at the same time.
	WithMigrationLock(ctx context.Context, db *sql.DB, fn func() error) error
	// MergeJSON returns an expression for the JSON object (TEXT) target
	// with the top-level keys of the object patch set over it.
	MergeJSON(target, patch string) string
}

// singleWriter is implemented by a Dialect whose engine runs one write at a
// time. The store then queues its writers on a lock in the process, so
// that they wait their turn instead of polling the engine's file lock
// with sleeps.
type singleWriter interface {
	SingleWriter() bool
}

// arrayParams is implemented by a Dialect whose engine takes an array as
// one parameter. Combined statements then send each column of a group as
// one array, so that their text and plan do not depend on the group size.
type arrayParams interface {
	ArrayParams() bool
}

// takesArrays reports whether the engine takes arrays as parameters.
func (s *Store) takesArrays() bool {
	a, ok := s.dialect.(arrayParams)
	return ok && a.ArrayParams()
}

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Store reads and writes records. A Store made by InTx runs every call in
// that transaction.
type Store struct {
	db      *sql.DB
	q       querier
	tx      *sql.Tx
	dialect Dialect
	inTx    bool
	// writeSlot is held by every write outside a transaction and for the
	// whole of every transaction, when the engine has a single writer. It
	// is a channel of one slot so that a wait for it ends with the context.
	// It, batch and stmts are nil in the Store of a transaction.
	writeSlot chan struct{}
	// batch groups the writes outside transactions into shared ones when
	// there is a write slot.
	batch *combiner[batchedExec]
	// stmts keeps prepared statements for the queries run outside
	// transactions, when the engine does not keep its own.
	stmts *stmtCache
	// tokenReads and heartbeats combine concurrent device token lookups
	// and heartbeat writes. They are nil in the Store of a transaction.
	tokenReads *combiner[tokenRead]
	heartbeats *combiner[heartbeatCall]
	// Now returns the current time; tests replace it.
	Now func() time.Time
}

// New returns a Store over db.
func New(db *sql.DB, dialect Dialect) *Store {
	s := &Store{db: db, q: db, dialect: dialect, Now: time.Now}
	if w, ok := dialect.(singleWriter); ok && w.SingleWriter() {
		s.writeSlot = make(chan struct{}, 1)
		s.stmts = newStmtCache(db)
		s.batch = newExecBatch(db, s.writeSlot, s.stmts)
	}
	s.startCombiners()
	return s
}

// DB returns the underlying database handle.
func (s *Store) DB() *sql.DB { return s.db }

// Dialect returns the engine's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// Tx returns the transaction of a Store made by InTx, and nil otherwise.
// Jobs are inserted through it so that they commit with the rows they
// belong to.
func (s *Store) Tx() *sql.Tx { return s.tx }

// Close closes the database.
func (s *Store) Close() error {
	if s.stmts != nil {
		s.stmts.close()
	}
	return s.db.Close()
}

// Ping checks that the database responds.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// InTx runs fn in one transaction, committed when fn returns nil.
func (s *Store) InTx(ctx context.Context, fn func(tx *Store) error) error {
	if s.inTx {
		return fn(s)
	}
	if s.writeSlot != nil {
		select {
		case s.writeSlot <- struct{}{}:
			defer func() { <-s.writeSlot }()
		case <-ctx.Done():
			return fmt.Errorf("wait for the write lock: %w", ctx.Err())
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	txStore := &Store{db: s.db, q: tx, tx: tx, dialect: s.dialect, inTx: true, Now: s.Now}
	if err := fn(txStore); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

func (s *Store) exec(ctx context.Context, query string, args ...any) (res sql.Result, err error) {
	if s.batch != nil {
		w := &batchedExec{query: s.dialect.Rebind(query), args: args}
		if err := s.batch.do(ctx, w); err != nil {
			return nil, fmt.Errorf("wait for the write lock: %w", err)
		}
		res, err = w.res, w.err
	} else {
		res, err = s.q.ExecContext(ctx, s.dialect.Rebind(query), args...)
	}
	if err != nil && s.dialect.IsUniqueViolation(err) {
		return nil, fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return res, err
}

// queryUncached runs a query whose text varies with its arguments (an IN
// list), which would only fill the statement cache.
func (s *Store) queryUncached(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.q.QueryContext(ctx, s.dialect.Rebind(query), args...)
}

// prepared returns the cached statement of the rebound query, or nil when
// the store keeps none for it (in a transaction, on an engine that caches
// its own, or when the cache is full).
func (s *Store) prepared(ctx context.Context, query string) *sql.Stmt {
	if s.stmts == nil {
		return nil
	}
	return s.stmts.get(ctx, query)
}

func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	query = s.dialect.Rebind(query)
	if st := s.prepared(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.q.QueryContext(ctx, query, args...)
}

func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	query = s.dialect.Rebind(query)
	if st := s.prepared(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.q.QueryRowContext(ctx, query, args...)
}

// execOne runs a write that must touch exactly one row.
func (s *Store) execOne(ctx context.Context, query string, args ...any) error {
	res, err := s.exec(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *Store) nowMs() int64 { return s.Now().UnixMilli() }
