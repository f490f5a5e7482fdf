package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
)

// execBatch runs the single-statement writes of a single-writer engine in
// shared transactions (group commit). A writer queues its statement and
// then waits for the write slot. The writer that gets the slot runs every
// statement queued by then in one transaction, preparing each distinct
// query once, and hands each writer its own result. Writers that arrive while a batch
// runs form the next one, so under load one commit serves many writes,
// and a lone writer runs in a transaction of its own.
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
// result. slot is the store's write slot.
func (b *execBatch) exec(ctx context.Context, db *sql.DB, slot chan struct{}, stmts *stmtCache,
	query string, args []any) (sql.Result, error) {
	w := &batchedExec{query: query, args: args, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, w)
	b.mu.Unlock()

	select {
	case slot <- struct{}{}:
		b.lead(ctx, db, slot, stmts)
	case <-w.done:
		// The holder of the slot ran this statement with its batch.
	case <-ctx.Done():
		if b.withdraw(w) {
			return nil, fmt.Errorf("wait for the write lock: %w", ctx.Err())
		}
		// A batch took the statement already; its result is on the way.
	}
	<-w.done
	return w.res, w.err
}

// lead runs the queued statements while holding slot, and releases it.
func (b *execBatch) lead(ctx context.Context, db *sql.DB, slot chan struct{}, stmts *stmtCache) {
	defer func() { <-slot }()
	b.mu.Lock()
	batch := b.queue
	b.queue = nil
	b.mu.Unlock()
	if len(batch) > 0 {
		// A writer that leaves does not cancel the others' statements.
		runBatch(context.WithoutCancel(ctx), db, stmts, batch)
	}
}

// withdraw removes w from the queue and reports whether it was still
// there.
func (b *execBatch) withdraw(w *batchedExec) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.Index(b.queue, w)
	if i < 0 {
		return false
	}
	b.queue = slices.Delete(b.queue, i, i+1)
	return true
}

// runBatch runs batch in one transaction and closes every writer's done
// channel. A failure to begin or commit is every statement's error. When a
// statement fails, SQLite may have rolled back the whole transaction (on
// an I/O error, for one), so the transaction is rolled back and every
// other statement runs again on its own.
func runBatch(ctx context.Context, db *sql.DB, cache *stmtCache, batch []*batchedExec) {
	defer func() {
		// A panic comes before any done channel is closed.
		if v := recover(); v != nil {
			for _, w := range batch {
				w.res, w.err = nil, fmt.Errorf("write batch panicked: %v", v)
				close(w.done)
			}
			panic(v)
		}
	}()

	if failed := runInTx(ctx, db, cache, batch); failed >= 0 {
		for i, w := range batch {
			if i != failed {
				w.res, w.err = db.ExecContext(ctx, w.query, w.args...)
			}
		}
	}
	for _, w := range batch {
		close(w.done)
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
