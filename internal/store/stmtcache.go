package store

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStmts bounds the statement cache. The store's SQL is a fixed
// set of texts, a few hundred with the list filters, because queries with
// IN lists bypass the cache. The bound guards against a query built from
// unbounded input.
const maxCachedStmts = 512

// stmtCache keeps one prepared statement per query text, so that a query
// run again skips SQLite's parser, which took more CPU than running the
// query itself in profiles of heartbeats. database/sql prepares each
// statement on a connection the first time it runs there and keeps it for
// that connection. A statement's
// rows reset it when they are closed, so a cached statement holds no read
// snapshot between uses.
type stmtCache struct {
	db *sql.DB
	mu sync.RWMutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: make(map[string]*sql.Stmt)}
}

// get returns the prepared statement for query, or nil when it cannot be
// prepared or the cache is full; the caller then runs query unprepared.
func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	c.mu.RLock()
	st, full := c.m[query], len(c.m) >= maxCachedStmts
	c.mu.RUnlock()
	if st != nil || full {
		return st
	}
	// Preparing waits for a free connection, so it runs outside the lock
	// and the loser of a race closes its copy.
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		// The unprepared run reports the error.
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cached := c.m[query]; cached != nil {
		_ = st.Close()
		return cached
	}
	if len(c.m) >= maxCachedStmts {
		_ = st.Close()
		return nil
	}
	c.m[query] = st
	return st
}

// inTx returns query prepared for tx, reusing the cached statement's
// preparation when tx runs on a connection that has it.
func (c *stmtCache) inTx(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	if st := c.get(ctx, query); st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	return tx.PrepareContext(ctx, query)
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		_ = st.Close()
		delete(c.m, q)
	}
}
