// Package jobs is bota's durable job queue. It runs River
// (github.com/riverqueue/river) on the same database as the API data, SQLite
// or PostgreSQL, and hides River's per-driver transaction type so that
// callers use one Queue type for both.
//
// Job kinds are ordinary River workers: an args type with Kind(), and a
// worker that embeds river.WorkerDefaults and may override Timeout (a
// per-kind run limit) and NextRetry (a per-kind retry schedule, see
// RetrySchedule). An args type may implement InsertOpts() to set the kind's
// queue, max attempts and uniqueness (see UniqueWhileActive).
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
)

// Config configures Open. Exactly one of SQLite and Pool is set.
type Config struct {
	// SQLite is the application's SQLite database (driver "sqlite" from
	// modernc.org/sqlite). River's tables live next to the API tables.
	SQLite *sql.DB

	// Pool is the application's PostgreSQL pool.
	Pool *pgxpool.Pool

	// Workers holds every job kind this process may insert or work. Insert
	// rejects a kind that has no worker here.
	Workers *river.Workers

	// Queues maps a queue name to the max number of jobs of that queue that
	// this process runs at once. The cap is per process: two processes on
	// one database may each run that many. Empty makes an insert-only Queue
	// whose Start fails.
	Queues map[string]int

	// Logger receives River's logs. Defaults to slog.Default().
	Logger *slog.Logger

	// JobTimeout is how long a job may run before its context is cancelled,
	// for kinds whose worker's Timeout returns 0. Defaults to 1 minute.
	JobTimeout time.Duration

	// RescueStuckJobsAfter is how long a job may stay running before the
	// rescuer assumes its process died and makes it available again (or
	// discards it once it has used its max attempts). It must exceed
	// JobTimeout and every worker's Timeout, or a job still running can be
	// started a second time. Defaults to 1 hour.
	RescueStuckJobsAfter time.Duration

	// FetchPollInterval is how often each queue looks for new jobs when no
	// insert notification arrives. Defaults to 1 second.
	FetchPollInterval time.Duration

	// ID names this process in River's attempted_by column. The server
	// uses its node id, so jobs of a node that stopped can be found.
	ID string

	// Test turns off River's random start-up delays of its maintenance
	// services, so tests start and stop quickly. Not for production.
	Test bool
}

// Queue is a River client on SQLite or PostgreSQL. Its methods are safe for
// concurrent use.
type Queue struct {
	client backend

	// insertTx inserts jobs inside a caller's database/sql transaction.
	insertTx func(ctx context.Context, tx *sql.Tx, params []river.InsertManyParams) (
		[]*rivertype.JobInsertResult, error)

	sqlite *sql.DB
	pool   *pgxpool.Pool
	logger *slog.Logger
}

// InsertResult is the outcome of inserting one job.
type InsertResult struct {
	// ID is the new job's id or, for a duplicate, the id of the existing job.
	ID int64

	// Duplicate is true when a unique job with the same key was already
	// queued or running, so nothing was inserted.
	Duplicate bool
}

// Open builds a Queue on cfg's database. It does not create River's tables
// (see Migrate) and does not work jobs until Start.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if (cfg.SQLite == nil) == (cfg.Pool == nil) {
		return nil, errors.New("jobs: exactly one of Config.SQLite and Config.Pool must be set")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	q := &Queue{sqlite: cfg.SQLite, pool: cfg.Pool, logger: cfg.Logger}
	riverCfg, err := clientConfig(cfg, q)
	if err != nil {
		return nil, err
	}

	if cfg.SQLite != nil {
		client, err := river.NewClient(riversqlite.New(cfg.SQLite), riverCfg)
		if err != nil {
			return nil, fmt.Errorf("jobs: new River client on SQLite: %w", err)
		}
		q.client = &riverClient[*sql.Tx]{client: client}
		q.insertTx = func(ctx context.Context, tx *sql.Tx, params []river.InsertManyParams) (
			[]*rivertype.JobInsertResult, error,
		) {
			return client.InsertManyTx(ctx, tx, params)
		}
		return q, nil
	}

	client, err := river.NewClient(riverpgxv5.New(cfg.Pool), riverCfg)
	if err != nil {
		return nil, fmt.Errorf("jobs: new River client on PostgreSQL: %w", err)
	}
	q.client = &riverClient[pgx.Tx]{client: client}

	// The store's PostgreSQL transactions are database/sql ones (pgx's stdlib
	// adapter), which riverpgxv5 cannot use. An insert-only client on River's
	// database/sql driver takes them; it needs no pool of its own because it
	// only ever runs inside the caller's transaction.
	txClient, err := river.NewClient(riverdatabasesql.New(nil), &river.Config{
		Logger:  cfg.Logger,
		Workers: cfg.Workers,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: new River client for database/sql transactions: %w", err)
	}
	q.insertTx = func(ctx context.Context, tx *sql.Tx, params []river.InsertManyParams) (
		[]*rivertype.JobInsertResult, error,
	) {
		return txClient.InsertManyTx(ctx, tx, params)
	}
	return q, nil
}

// clientConfig translates cfg into River's client configuration.
func clientConfig(cfg Config, q *Queue) (*river.Config, error) {
	riverCfg := &river.Config{
		FetchPollInterval:    cfg.FetchPollInterval,
		ID:                   cfg.ID,
		JobTimeout:           cfg.JobTimeout,
		Logger:               cfg.Logger,
		Middleware:           []rivertype.Middleware{&queueContextMiddleware{queue: q}},
		RescueStuckJobsAfter: cfg.RescueStuckJobsAfter,
		TestOnly:             cfg.Test,
		Workers:              cfg.Workers,
	}
	// River rejects a poll interval below its fetch cooldown (100 ms by
	// default), so a shorter poll interval shortens the cooldown with it.
	if cfg.FetchPollInterval > 0 && cfg.FetchPollInterval < river.FetchCooldownDefault {
		riverCfg.FetchCooldown = cfg.FetchPollInterval
	}
	if len(cfg.Queues) > 0 {
		if cfg.Workers == nil {
			return nil, errors.New("jobs: Config.Queues needs Config.Workers")
		}
		riverCfg.Queues = make(map[string]river.QueueConfig, len(cfg.Queues))
		for name, maxWorkers := range cfg.Queues {
			if maxWorkers < 1 {
				return nil, fmt.Errorf("jobs: queue %q: max workers is %d, must be at least 1",
					name, maxWorkers)
			}
			riverCfg.Queues[name] = river.QueueConfig{MaxWorkers: maxWorkers}
		}
	}
	return riverCfg, nil
}

// Start starts working jobs in the background. It returns once the queues
// are running; ctx bounds only the start-up.
func (q *Queue) Start(ctx context.Context) error {
	// River treats cancellation of the context given to Start as a hard stop,
	// so the client runs on a context that ends only through Stop.
	if err := q.client.start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("jobs: start: %w", err)
	}
	q.logger.InfoContext(ctx, "JobQueueStarted")
	return nil
}

// hardStopWait bounds how long Stop waits, after ctx ends, for jobs whose
// contexts it cancelled to return. A worker that ignores its context can
// hold a job past this, and Stop then returns an error.
const hardStopWait = 10 * time.Second

// Stop stops fetching jobs and waits for running jobs to finish. When ctx
// ends first, Stop cancels the running jobs' contexts and waits up to
// hardStopWait more for their workers to return. River puts a job that
// returned because of that cancellation back to available without using
// one of its attempts, so another process (or the next start) runs it.
func (q *Queue) Stop(ctx context.Context) error {
	err := q.client.stop(ctx)
	if err == nil {
		q.logger.InfoContext(ctx, "JobQueueStopped")
		return nil
	}
	if ctx.Err() == nil {
		return fmt.Errorf("jobs: stop: %w", err)
	}

	q.logger.WarnContext(ctx, "JobQueueStopDeadline", slog.String("error", err.Error()))
	hardCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hardStopWait)
	defer cancel()
	if err := q.client.stopAndCancel(hardCtx); err != nil {
		return fmt.Errorf("jobs: stop after cancelling running jobs: %w", err)
	}
	q.logger.InfoContext(ctx, "JobQueueStopped", slog.Bool("cancelled_running_jobs", true))
	return nil
}

// Stopped returns a channel that is closed once the queue has stopped.
func (q *Queue) Stopped() <-chan struct{} { return q.client.stopped() }

// Insert adds one job. opts may be nil, and fields left zero in it fall back
// to the args type's InsertOpts() and then to River's defaults. For a unique
// kind whose key is already queued or running, Insert inserts nothing and
// returns the existing job's id with duplicate true.
func (q *Queue) Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (
	id int64, duplicate bool, err error,
) {
	results, err := q.InsertMany(ctx, []river.InsertManyParams{{Args: args, InsertOpts: opts}})
	if err != nil {
		return 0, false, err
	}
	return results[0].ID, results[0].Duplicate, nil
}

// InsertMany adds jobs in one transaction and returns one result per
// parameter, in order.
func (q *Queue) InsertMany(ctx context.Context, params []river.InsertManyParams) (
	[]InsertResult, error,
) {
	results, err := q.client.insertMany(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("jobs: insert %d jobs: %w", len(params), err)
	}
	return insertResults(results), nil
}

// InsertTx adds one job inside tx, a transaction on the same database as the
// Queue (the *sql.DB given as Config.SQLite, or one opened on Config.Pool's
// database with pgx's stdlib package). The job exists only if tx commits,
// and workers see it only after the commit.
func (q *Queue) InsertTx(ctx context.Context, tx *sql.Tx, args river.JobArgs,
	opts *river.InsertOpts,
) (id int64, duplicate bool, err error) {
	results, err := q.InsertManyTx(ctx, tx, []river.InsertManyParams{{Args: args, InsertOpts: opts}})
	if err != nil {
		return 0, false, err
	}
	return results[0].ID, results[0].Duplicate, nil
}

// InsertManyTx adds jobs inside tx, as InsertTx does.
func (q *Queue) InsertManyTx(ctx context.Context, tx *sql.Tx, params []river.InsertManyParams) (
	[]InsertResult, error,
) {
	results, err := q.insertTx(ctx, tx, params)
	if err != nil {
		return nil, fmt.Errorf("jobs: insert %d jobs in transaction: %w", len(params), err)
	}
	return insertResults(results), nil
}

func insertResults(results []*rivertype.JobInsertResult) []InsertResult {
	out := make([]InsertResult, len(results))
	for i, r := range results {
		out[i] = InsertResult{ID: r.Job.ID, Duplicate: r.UniqueSkippedAsDuplicate}
	}
	return out
}

// Job returns the job with the given id. The error wraps rivertype.ErrNotFound
// when no such job exists, including after River's cleaner deleted it
// (completed jobs are kept 24 hours by default).
func (q *Queue) Job(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	job, err := q.client.job(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("jobs: get job %d: %w", id, err)
	}
	return job, nil
}

// Stats returns the number of jobs in each state, with every state present
// (zero when no job is in it), for metrics.
func (q *Queue) Stats(ctx context.Context) (map[rivertype.JobState]int, error) {
	counts := make(map[rivertype.JobState]int, len(rivertype.JobStates()))
	for _, state := range rivertype.JobStates() {
		counts[state] = 0
	}

	const query = `SELECT state, count(*) FROM river_job GROUP BY state`
	if q.sqlite != nil {
		rows, err := q.sqlite.QueryContext(ctx, query)
		if err != nil {
			return nil, fmt.Errorf("jobs: count jobs by state: %w", err)
		}
		defer rows.Close()
		if err := scanStateCounts(rows, counts); err != nil {
			return nil, err
		}
		return counts, nil
	}

	rows, err := q.pool.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("jobs: count jobs by state: %w", err)
	}
	defer rows.Close()
	if err := scanStateCounts(rows, counts); err != nil {
		return nil, err
	}
	return counts, nil
}

// stateRows is the part of *sql.Rows and pgx.Rows that scanStateCounts uses.
type stateRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanStateCounts adds each (state, count) row to counts.
func scanStateCounts(rows stateRows, counts map[rivertype.JobState]int) error {
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return fmt.Errorf("jobs: count jobs by state: %w", err)
		}
		counts[rivertype.JobState(state)] += n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("jobs: count jobs by state: %w", err)
	}
	return nil
}
