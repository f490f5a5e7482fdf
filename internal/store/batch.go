package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// execBatch runs the single-statement writes of a single-writer engine in
// shared transactions (group commit). A writer queues its statement and
// then waits for the write mutex; whoever gets the mutex first runs every
// statement queued by then in one transaction, preparing each distinct
// query once, and hands each writer its own result. Writers that arrive
// while a batch runs form the next one, so under load one commit serves
// many writes, and a lone writer runs in a transaction of its own.
type execBatch struct {
	mu    sync.Mutex
	queue []*batchedExec
}

type batchedExec struct {
	query string
	args  []any
	res   sql.Result
	err   error
	done  chan struct{}
}

// exec runs query with args through the next batch and returns its own
// result. writeMu is the store's write mutex.
func (b *execBatch) exec(ctx context.Context, db *sql.DB, writeMu *sync.Mutex, stmts *stmtCache,
	query string, args []any) (sql.Result, error) {
	w := &batchedExec{query: query, args: args, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, w)
	b.mu.Unlock()

	writeMu.Lock()
	b.mu.Lock()
	batch := b.queue
	b.queue = nil
	b.mu.Unlock()
	if len(batch) > 0 {
		// A writer that leaves does not cancel the others' statements.
		runBatch(context.WithoutCancel(ctx), db, stmts, batch)
	}
	writeMu.Unlock()

	// An earlier holder of the mutex may have run this statement; it
	// finished the batch before it let go of the mutex.
	<-w.done
	return w.res, w.err
}

// runBatch runs batch in one transaction. A statement's error is its
// own; a failure to begin or commit is every statement's.
func runBatch(ctx context.Context, db *sql.DB, cache *stmtCache, batch []*batchedExec) {
	finish := func(err error) {
		for _, w := range batch {
			if err != nil {
				w.res, w.err = nil, err
			}
			close(w.done)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		finish(fmt.Errorf("begin transaction: %w", err))
		return
	}
	stmts := make(map[string]*sql.Stmt, 2)
	for _, w := range batch {
		st, ok := stmts[w.query]
		if !ok {
			st, err = cache.inTx(ctx, tx, w.query)
			if err != nil {
				w.err = err
				continue
			}
			stmts[w.query] = st
		}
		w.res, w.err = st.ExecContext(ctx, w.args...)
	}
	for _, st := range stmts {
		_ = st.Close()
	}
	if err := tx.Commit(); err != nil {
		finish(fmt.Errorf("commit transaction: %w", err))
		return
	}
	finish(nil)
}
