package jobs_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite"

	"github.com/botaserver/bota/internal/jobs"
	"github.com/botaserver/bota/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(runCrashChild())
	}
	code := m.Run()
	testenv.StopAll()
	os.Exit(code)
}

// sqliteDSN returns a DSN for path with the settings the application uses:
// WAL journal and a busy timeout, so that a writer waits for another
// instead of failing.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)"
}

// testDB is one database with River's tables, on SQLite or PostgreSQL.
type testDB struct {
	name   string // "sqlite", "sqlite-1conn" or "postgres"
	dsn    string // SQLite DSN or PostgreSQL URL, for a child process
	sqlite *sql.DB
	pool   *pgxpool.Pool
	// sqlDB is a database/sql handle on the same database: the SQLite
	// *sql.DB itself, or one over pool.
	sqlDB *sql.DB
	logs  *logRecorder
}

func openSQLite(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatalf("open SQLite %s: %v", dsn, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close SQLite: %v", err)
		}
	})
	return db
}

func openPool(t testing.TB, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("open PostgreSQL pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func newSQLiteDB(t testing.TB) *testDB {
	t.Helper()
	return newSQLiteDBConns(t, 0)
}

// newSQLiteDBConns opens a SQLite test database whose pool has at most
// maxConns connections (0 for no limit, database/sql's default).
func newSQLiteDBConns(t testing.TB, maxConns int) *testDB {
	t.Helper()
	dsn := sqliteDSN(filepath.Join(t.TempDir(), "bota.db"))
	db := &testDB{name: "sqlite", dsn: dsn, logs: &logRecorder{}}
	if maxConns > 0 {
		db.name = fmt.Sprintf("sqlite-%dconn", maxConns)
	}
	db.sqlite = openSQLite(t, dsn)
	db.sqlite.SetMaxOpenConns(maxConns)
	db.sqlDB = db.sqlite
	db.migrate(t)
	return db
}

func newPostgresDB(t testing.TB) *testDB {
	t.Helper()
	dbURL := testenv.PostgresURL(t)
	db := &testDB{name: "postgres", dsn: dbURL, logs: &logRecorder{}}
	db.pool = openPool(t, dbURL)
	db.sqlDB = stdlib.OpenDBFromPool(db.pool)
	t.Cleanup(func() {
		if err := db.sqlDB.Close(); err != nil {
			t.Errorf("close database/sql handle: %v", err)
		}
	})
	db.migrate(t)
	return db
}

// bothDBs runs fn as two parallel subtests, one per database, and marks the
// calling test parallel: most of these tests wait on River's timers.
func bothDBs(t *testing.T, fn func(t *testing.T, db *testDB)) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, newSQLiteDB(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, newPostgresDB(t))
	})
}

func (db *testDB) migrate(t testing.TB) {
	t.Helper()
	q := db.open(t, jobs.Config{})
	if err := q.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	db.exec(t, `CREATE TABLE job_effect (job_id BIGINT NOT NULL, worker TEXT NOT NULL)`)
}

// open builds a Queue on db with cfg, filling in the database, a logger that
// records warnings and errors, and Test mode.
func (db *testDB) open(t testing.TB, cfg jobs.Config) *jobs.Queue {
	t.Helper()
	cfg.SQLite = db.sqlite
	cfg.Pool = db.pool
	cfg.Test = true
	if cfg.Logger == nil {
		cfg.Logger = slog.New(db.logs)
	}
	q, err := jobs.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	return q
}

// start starts q and stops it when the test ends.
func start(t testing.TB, q *jobs.Queue) {
	t.Helper()
	if err := q.Start(context.Background()); err != nil {
		t.Fatalf("start queue: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := q.Stop(ctx); err != nil {
			t.Errorf("stop queue: %v", err)
		}
	})
}

// placeholder returns the n-th (from 1) bind parameter in db's SQL dialect.
func (db *testDB) placeholder(n int) string {
	if db.sqlite != nil {
		return "?"
	}
	return fmt.Sprintf("$%d", n)
}

func (db *testDB) exec(t testing.TB, query string, args ...any) {
	t.Helper()
	if _, err := db.sqlDB.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
}

// recordEffect stores that worker finished job id. Tests count these rows to
// see how many times each job really ran to completion.
func (db *testDB) recordEffect(ctx context.Context, id int64, worker string) error {
	query := "INSERT INTO job_effect (job_id, worker) VALUES (" +
		db.placeholder(1) + ", " + db.placeholder(2) + ")"
	_, err := db.sqlDB.ExecContext(ctx, query, id, worker)
	return err
}

// effects returns how many times each job id was recorded.
func (db *testDB) effects(t testing.TB) map[int64]int {
	t.Helper()
	rows, err := db.sqlDB.QueryContext(context.Background(),
		`SELECT job_id, count(*) FROM job_effect GROUP BY job_id`)
	if err != nil {
		t.Fatalf("query effects: %v", err)
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var id int64
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatalf("scan effects: %v", err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read effects: %v", err)
	}
	return out
}

func stats(t testing.TB, q *jobs.Queue) map[rivertype.JobState]int {
	t.Helper()
	s, err := q.Stats(context.Background())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return s
}

// waitFor polls cond every 20 ms until it returns true or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logRecorder is a slog handler that keeps warnings and errors, so tests
// can assert that River logged no database failures (such as SQLite's
// "database is locked").
type logRecorder struct {
	mu      sync.Mutex
	records []string
}

func (r *logRecorder) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn
}

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, b.String())
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// matching returns the recorded lines that contain any of substrings.
func (r *logRecorder) matching(substrings ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.records {
		if slices.ContainsFunc(substrings, func(s string) bool {
			return strings.Contains(rec, s)
		}) {
			out = append(out, rec)
		}
	}
	return out
}

// lockErrors returns recorded lines that report SQLite lock contention or
// PostgreSQL serialization and deadlock failures.
func (r *logRecorder) lockErrors() []string {
	return r.matching("database is locked", "SQLITE_BUSY", "deadlock", "could not serialize")
}
