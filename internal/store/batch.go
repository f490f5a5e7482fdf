package store

import (
	"context"
	"database/sql"
	"fmt"
)

// newExecBatch returns the combiner that runs the single-statement writes
// of a single-writer engine in shared transactions (group commit). Its
// slot is the store's write slot, so a group runs only while no
// transaction does. The writer that gets the slot runs every statement
// queued by then in one transaction, preparing each distinct query once,
// and hands each writer its own result.
func newExecBatch(db *sql.DB, slot chan struct{}, stmts *stmtCache) *combiner[batchedExec] {
	return &combiner[batchedExec]{
		slot: slot,
		run: func(ctx context.Context, batch []*batchedExec) {
			runBatch(ctx, db, stmts, batch)
		},
		fail: func(w *batchedExec, err error) { w.res, w.err = nil, err },
	}
}

type batchedExec struct {
	query string
	args  []any
	res   sql.Result
	err   error
}

// runBatch runs batch in one transaction and sets each writer's result.
// A failure to begin or commit is every statement's error. When a
// statement fails, SQLite may have rolled back the whole transaction (on
// an I/O error, for one), so the transaction is rolled back and every
// other statement runs again on its own.
func runBatch(ctx context.Context, db *sql.DB, cache *stmtCache, batch []*batchedExec) {
	if failed := runInTx(ctx, db, cache, batch); failed >= 0 {
		for i, w := range batch {
			if i != failed {
				w.res, w.err = db.ExecContext(ctx, w.query, w.args...)
			}
		}
	}
}

// runInTx runs batch in one transaction and sets each statement's result.
// It returns the index of the statement that failed, after rolling back,
// or -1. A failure to begin or commit is set on every statement, and
// runInTx then returns -1 as well, because nothing is left to retry.
func runInTx(ctx context.Context, db *sql.DB, cache *stmtCache, batch []*batchedExec) (failed int) {
	setAll := func(err error) int {
		for _, w := range batch {
			w.res, w.err = nil, err
		}
		return -1
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return setAll(fmt.Errorf("begin transaction: %w", err))
	}
	stmts := make(map[string]*sql.Stmt, 2)
	defer func() {
		for _, st := range stmts {
			_ = st.Close()
		}
	}()
	for i, w := range batch {
		st, ok := stmts[w.query]
		if !ok {
			if st, err = cache.inTx(ctx, tx, w.query); err != nil {
				w.err = err
				_ = tx.Rollback()
				return i
			}
			stmts[w.query] = st
		}
		if w.res, w.err = st.ExecContext(ctx, w.args...); w.err != nil {
			_ = tx.Rollback()
			return i
		}
	}
	if err := tx.Commit(); err != nil {
		return setAll(fmt.Errorf("commit transaction: %w", err))
	}
	return -1
}
