package jobs_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/botaserver/bota/internal/jobs"
	"github.com/botaserver/bota/internal/testenv"
)

// transcribeArgs is a job kind with at most one active job per recording.
type transcribeArgs struct {
	RecordingID string `json:"recording_id" river:"unique"`
	Note        string `json:"note"`
}

func (transcribeArgs) Kind() string { return "test_transcribe" }

func (transcribeArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: "speech", UniqueOpts: jobs.UniqueWhileActive()}
}

// sleepArgs is a job that takes SleepMS milliseconds, or returns early with
// its context's error when cancelled.
type sleepArgs struct {
	SleepMS int `json:"sleep_ms"`
}

func (sleepArgs) Kind() string { return "test_sleep" }

// sleepWorker runs sleepArgs jobs. It records an effect for each job it
// finishes and tracks how many of its jobs run at once.
type sleepWorker struct {
	river.WorkerDefaults[sleepArgs]
	db             *testDB
	running, peak  atomic.Int64
	started, ended atomic.Int64
}

func (w *sleepWorker) Work(ctx context.Context, job *river.Job[sleepArgs]) error {
	w.started.Add(1)
	defer w.ended.Add(1)
	now := w.running.Add(1)
	defer w.running.Add(-1)
	for {
		peak := w.peak.Load()
		if now <= peak || w.peak.CompareAndSwap(peak, now) {
			break
		}
	}

	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(job.Args.SleepMS) * time.Millisecond):
	}
	return w.db.recordEffect(ctx, job.ID, "sleep")
}

func TestOpenRequiresOneDatabase(t *testing.T) {
	_, err := jobs.Open(context.Background(), jobs.Config{})
	if err == nil {
		t.Fatal("Open with no database: got nil error")
	}
	if !strings.Contains(err.Error(), "exactly one") {
		t.Errorf("Open with no database: error %q does not name the rule", err)
	}
}

func TestQueueRejectsZeroWorkers(t *testing.T) {
	db := newSQLiteDB(t)
	workers := river.NewWorkers()
	river.AddWorker(workers, &sleepWorker{db: db})
	_, err := jobs.Open(context.Background(), jobs.Config{
		SQLite: db.sqlite, Workers: workers, Queues: map[string]int{"speech": 0},
	})
	if err == nil || !strings.Contains(err.Error(), `queue "speech"`) {
		t.Fatalf("Open with 0 workers: got error %v, want one naming the queue", err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	bothDBs(t, func(t *testing.T, db *testDB) {
		// The database is already migrated once by newSQLiteDB/newPostgresDB.
		q := db.open(t, jobs.Config{})
		if err := q.Migrate(context.Background()); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		s := stats(t, q)
		if len(s) != len(rivertype.JobStates()) {
			t.Errorf("Stats has %d states, want %d", len(s), len(rivertype.JobStates()))
		}
	})
}

func TestMigrateConcurrentPostgres(t *testing.T) {
	dbURL := testenv.PostgresURL(t) // an empty database
	pool := openPool(t, dbURL)
	ctx := context.Background()

	const processes = 4
	errs := make(chan error, processes)
	var wg sync.WaitGroup
	for range processes {
		// Each "process" has its own pool, so the advisory lock is taken on
		// separate sessions as it would be across processes.
		q, err := jobs.Open(ctx, jobs.Config{
			Pool: openPool(t, dbURL), Logger: slog.New(&logRecorder{}),
		})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		wg.Go(func() { errs <- q.Migrate(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate: %v", err)
		}
	}

	var versions int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM river_migration`).Scan(&versions); err != nil {
		t.Fatalf("count migrations: %v", err)
	}
	if versions == 0 {
		t.Error("river_migration is empty after concurrent Migrate")
	}
}

func TestInsertUniquePerRecording(t *testing.T) {
	bothDBs(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		workers := river.NewWorkers()
		var worked atomic.Int64
		river.AddWorker(workers, river.WorkFunc(
			func(ctx context.Context, job *river.Job[transcribeArgs]) error {
				worked.Add(1)
				return db.recordEffect(ctx, job.ID, "transcribe")
			}))
		q := db.open(t, jobs.Config{Workers: workers, Queues: map[string]int{"speech": 2}})

		first, dup, err := q.Insert(ctx, transcribeArgs{RecordingID: "rec_1", Note: "a"}, nil)
		if err != nil {
			t.Fatalf("insert rec_1: %v", err)
		}
		if dup {
			t.Error("first insert of rec_1 reported duplicate")
		}

		// Fields without the unique tag do not change the key.
		again, dup, err := q.Insert(ctx, transcribeArgs{RecordingID: "rec_1", Note: "b"}, nil)
		if err != nil {
			t.Fatalf("insert rec_1 again: %v", err)
		}
		if !dup {
			t.Error("second insert of rec_1 while queued: duplicate = false, want true")
		}
		if again != first {
			t.Errorf("duplicate insert returned id %d, want existing id %d", again, first)
		}

		other, dup, err := q.Insert(ctx, transcribeArgs{RecordingID: "rec_2"}, nil)
		if err != nil {
			t.Fatalf("insert rec_2: %v", err)
		}
		if dup || other == first {
			t.Errorf("insert rec_2: id %d duplicate %v, want a new job", other, dup)
		}

		// Concurrent inserts of one new key: exactly one wins.
		var wg sync.WaitGroup
		var inserted, duplicates atomic.Int64
		for range 16 {
			wg.Go(func() {
				_, dup, err := q.Insert(ctx, transcribeArgs{RecordingID: "rec_3"}, nil)
				switch {
				case err != nil:
					t.Errorf("concurrent insert rec_3: %v", err)
				case dup:
					duplicates.Add(1)
				default:
					inserted.Add(1)
				}
			})
		}
		wg.Wait()
		if inserted.Load() != 1 || duplicates.Load() != 15 {
			t.Errorf("16 concurrent inserts of rec_3: %d inserted, %d duplicates, want 1 and 15",
				inserted.Load(), duplicates.Load())
		}

		// Once the jobs complete, the key is free again.
		start(t, q)
		waitFor(t, 10*time.Second, "3 jobs completed", func() bool {
			return stats(t, q)[rivertype.JobStateCompleted] == 3
		})
		next, dup, err := q.Insert(ctx, transcribeArgs{RecordingID: "rec_1"}, nil)
		if err != nil {
			t.Fatalf("insert rec_1 after completion: %v", err)
		}
		if dup || next == first {
			t.Errorf("insert rec_1 after completion: id %d duplicate %v, want a new job", next, dup)
		}
		waitFor(t, 10*time.Second, "4 jobs worked", func() bool { return worked.Load() == 4 })
		if locks := db.logs.lockErrors(); len(locks) > 0 {
			t.Errorf("River logged lock errors:\n%s", strings.Join(locks, "\n"))
		}
	})
}

func TestInsertManyReportsDuplicates(t *testing.T) {
	bothDBs(t, func(t *testing.T, db *testDB) {
		workers := river.NewWorkers()
		river.AddWorker(workers, river.WorkFunc(
			func(context.Context, *river.Job[transcribeArgs]) error { return nil }))
		q := db.open(t, jobs.Config{Workers: workers})

		ctx := context.Background()
		first, err := q.InsertMany(ctx, []river.InsertManyParams{
			{Args: transcribeArgs{RecordingID: "rec_a"}},
			{Args: transcribeArgs{RecordingID: "rec_b"}},
		})
		if err != nil {
			t.Fatalf("InsertMany: %v", err)
		}
		if len(first) != 2 || first[0].Duplicate || first[1].Duplicate {
			t.Fatalf("first batch %+v, want 2 new jobs", first)
		}

		second, err := q.InsertMany(ctx, []river.InsertManyParams{
			{Args: transcribeArgs{RecordingID: "rec_c"}},
			{Args: transcribeArgs{RecordingID: "rec_a"}},
		})
		if err != nil {
			t.Fatalf("InsertMany: %v", err)
		}
		if len(second) != 2 {
			t.Fatalf("second batch returned %d results, want 2", len(second))
		}
		if second[0].Duplicate {
			t.Errorf("rec_c %+v, want a new job", second[0])
		}
		if !second[1].Duplicate || second[1].ID != first[0].ID {
			t.Errorf("rec_a again %+v, want duplicate of id %d", second[1], first[0].ID)
		}

		// River rejects a batch that repeats a unique key within itself,
		// and inserts none of it.
		_, err = q.InsertMany(ctx, []river.InsertManyParams{
			{Args: transcribeArgs{RecordingID: "rec_d"}},
			{Args: transcribeArgs{RecordingID: "rec_d"}},
		})
		if err == nil {
			t.Error("batch repeating rec_d: got nil error")
		}
		if n := stats(t, q)[rivertype.JobStateAvailable]; n != 3 {
			t.Errorf("available jobs = %d, want 3", n)
		}
	})
}

func TestInsertRejectsUnknownKind(t *testing.T) {
	db := newSQLiteDB(t)
	q := db.open(t, jobs.Config{Workers: river.NewWorkers()})
	_, _, err := q.Insert(context.Background(), sleepArgs{}, nil)
	if err == nil {
		t.Fatal("insert of a kind without a worker: got nil error")
	}
}

func TestInsertTxFollowsTransaction(t *testing.T) {
	bothDBs(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		workers := river.NewWorkers()
		river.AddWorker(workers, &sleepWorker{db: db})
		q := db.open(t, jobs.Config{Workers: workers})

		tx, err := db.sqlDB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		rolledBack, _, err := q.InsertTx(ctx, tx, sleepArgs{}, nil)
		if err != nil {
			t.Fatalf("InsertTx: %v", err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		if _, err := q.Job(ctx, rolledBack); !errors.Is(err, rivertype.ErrNotFound) {
			t.Errorf("job %d after rollback: error %v, want ErrNotFound", rolledBack, err)
		}

		tx, err = db.sqlDB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		committed, _, err := q.InsertTx(ctx, tx, sleepArgs{SleepMS: 1}, nil)
		if err != nil {
			t.Fatalf("InsertTx: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("commit: %v", err)
		}
		job, err := q.Job(ctx, committed)
		if err != nil {
			t.Fatalf("job %d after commit: %v", committed, err)
		}
		if job.Kind != "test_sleep" || job.State != rivertype.JobStateAvailable {
			t.Errorf("job after commit: kind %q state %q, want test_sleep available",
				job.Kind, job.State)
		}
	})
}

// timeoutArgs is a job whose worker has a 200 ms timeout and waits longer.
type timeoutArgs struct{}

func (timeoutArgs) Kind() string { return "test_timeout" }

func (timeoutArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 1} }

type timeoutWorker struct {
	river.WorkerDefaults[timeoutArgs]
	ran atomic.Int64 // nanoseconds
}

func (w *timeoutWorker) Timeout(*river.Job[timeoutArgs]) time.Duration {
	return 200 * time.Millisecond
}

func (w *timeoutWorker) Work(ctx context.Context, _ *river.Job[timeoutArgs]) error {
	began := time.Now()
	defer func() { w.ran.Store(int64(time.Since(began))) }()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return nil
	}
}

func TestTimeoutPerKind(t *testing.T) {
	bothDBs(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		workers := river.NewWorkers()
		timeout := &timeoutWorker{}
		sleep := &sleepWorker{db: db}
		river.AddWorker(workers, timeout)
		river.AddWorker(workers, sleep)
		q := db.open(t, jobs.Config{
			Workers: workers, Queues: map[string]int{river.QueueDefault: 4},
			FetchPollInterval: 50 * time.Millisecond,
		})
		start(t, q)

		timedOut, _, err := q.Insert(ctx, timeoutArgs{}, nil)
		if err != nil {
			t.Fatalf("insert timeout job: %v", err)
		}
		// A kind without Timeout() runs under the client's 1 minute default,
		// so 500 ms of work completes.
		slow, _, err := q.Insert(ctx, sleepArgs{SleepMS: 500}, nil)
		if err != nil {
			t.Fatalf("insert sleep job: %v", err)
		}

		waitFor(t, 10*time.Second, "both jobs finalized", func() bool {
			s := stats(t, q)
			return s[rivertype.JobStateDiscarded] == 1 && s[rivertype.JobStateCompleted] == 1
		})
		job, err := q.Job(ctx, timedOut)
		if err != nil {
			t.Fatalf("get timed-out job: %v", err)
		}
		if job.State != rivertype.JobStateDiscarded {
			t.Errorf("timed-out job state %q, want discarded (max attempts 1)", job.State)
		}
		if len(job.Errors) != 1 || !strings.Contains(job.Errors[0].Error, "deadline exceeded") {
			t.Errorf("timed-out job errors %+v, want one deadline exceeded", job.Errors)
		}
		if d := time.Duration(timeout.ran.Load()); d < 200*time.Millisecond || d > 2*time.Second {
			t.Errorf("timed-out job ran %s, want about 200ms", d)
		}
		if job, err := q.Job(ctx, slow); err != nil || job.State != rivertype.JobStateCompleted {
			t.Errorf("slow job without timeout: %v, err %v, want completed", job, err)
		}
	})
}

// failArgs is a job that always fails, with up to 3 attempts.
type failArgs struct{}

func (failArgs) Kind() string { return "test_fail" }

func (failArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

type failWorker struct {
	river.WorkerDefaults[failArgs]
	schedule jobs.RetrySchedule
	attempts atomic.Int64
}

func (w *failWorker) NextRetry(job *river.Job[failArgs]) time.Time {
	return w.schedule.NextRetry(job.JobRow)
}

func (w *failWorker) Work(context.Context, *river.Job[failArgs]) error {
	w.attempts.Add(1)
	return errors.New("remote returned 503")
}

func TestRetriesUntilMaxAttempts(t *testing.T) {
	bothDBs(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		workers := river.NewWorkers()
		worker := &failWorker{schedule: jobs.RetrySchedule{50 * time.Millisecond, 100 * time.Millisecond}}
		river.AddWorker(workers, worker)
		q := db.open(t, jobs.Config{
			Workers: workers, Queues: map[string]int{river.QueueDefault: 1},
			FetchPollInterval: 20 * time.Millisecond,
		})
		start(t, q)

		id, _, err := q.Insert(ctx, failArgs{}, nil)
		if err != nil {
			t.Fatalf("insert: %v", err)
		}
		waitFor(t, 10*time.Second, "job discarded", func() bool {
			return stats(t, q)[rivertype.JobStateDiscarded] == 1
		})
		job, err := q.Job(ctx, id)
		if err != nil {
			t.Fatalf("get job: %v", err)
		}
		if job.Attempt != 3 || len(job.Errors) != 3 {
			t.Errorf("attempt %d with %d errors, want 3 and 3", job.Attempt, len(job.Errors))
		}
		if n := worker.attempts.Load(); n != 3 {
			t.Errorf("worker ran %d times, want 3", n)
		}
		// Each retry waited at least its scheduled delay.
		gap1 := job.Errors[1].At.Sub(job.Errors[0].At)
		gap2 := job.Errors[2].At.Sub(job.Errors[1].At)
		if gap1 < 50*time.Millisecond || gap2 < 100*time.Millisecond {
			t.Errorf("gaps between attempts %s and %s, want at least 50ms and 100ms", gap1, gap2)
		}
	})
}

// webhookArgs is a delivery job that uses the webhook retry schedule.
type webhookArgs struct{}

func (webhookArgs) Kind() string { return "test_webhook" }

func (webhookArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: jobs.WebhookRetrySchedule.MaxAttempts()}
}

type webhookWorker struct {
	river.WorkerDefaults[webhookArgs]
}

func (w *webhookWorker) NextRetry(job *river.Job[webhookArgs]) time.Time {
	return jobs.WebhookRetrySchedule.NextRetry(job.JobRow)
}

func (w *webhookWorker) Work(context.Context, *river.Job[webhookArgs]) error {
	return errors.New("connection refused")
}

func TestWebhookScheduleFirstRetry(t *testing.T) {
	bothDBs(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		workers := river.NewWorkers()
		river.AddWorker(workers, &webhookWorker{})
		q := db.open(t, jobs.Config{
			Workers: workers, Queues: map[string]int{river.QueueDefault: 1},
			FetchPollInterval: 20 * time.Millisecond,
		})
		start(t, q)

		id, _, err := q.Insert(ctx, webhookArgs{}, nil)
		if err != nil {
			t.Fatalf("insert: %v", err)
		}
		waitFor(t, 10*time.Second, "job retryable", func() bool {
			return stats(t, q)[rivertype.JobStateRetryable] == 1
		})
		job, err := q.Job(ctx, id)
		if err != nil {
			t.Fatalf("get job: %v", err)
		}
		if job.MaxAttempts != 6 {
			t.Errorf("max attempts %d, want 6", job.MaxAttempts)
		}
		wait := job.ScheduledAt.Sub(job.Errors[0].At)
		if wait < 59*time.Second || wait > 61*time.Second {
			t.Errorf("first retry scheduled %s after the failure, want 1m", wait)
		}
	})
}

func TestRetryScheduleDelays(t *testing.T) {
	want := []time.Duration{
		time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 8 * time.Hour, 8 * time.Hour,
	}
	for i, w := range want {
		failures := i + 1
		if got := jobs.WebhookRetrySchedule.Delay(failures); got != w {
			t.Errorf("Delay(%d) = %s, want %s", failures, got, w)
		}
		job := &rivertype.JobRow{Errors: make([]rivertype.AttemptError, i)}
		before := time.Now()
		got := jobs.WebhookRetrySchedule.NextRetry(job).Sub(before)
		if got < w || got > w+time.Second {
			t.Errorf("NextRetry after %d failures is %s away, want %s", failures, got, w)
		}
	}
	if n := jobs.WebhookRetrySchedule.MaxAttempts(); n != 6 {
		t.Errorf("MaxAttempts = %d, want 6", n)
	}
	if got := (jobs.RetrySchedule{}).NextRetry(&rivertype.JobRow{}); !got.IsZero() {
		t.Errorf("empty schedule NextRetry = %s, want zero time (client policy)", got)
	}
}

func TestConcurrencyCap(t *testing.T) {
	bothDBs(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		workers := river.NewWorkers()
		worker := &sleepWorker{db: db}
		river.AddWorker(workers, worker)
		q := db.open(t, jobs.Config{
			Workers: workers, Queues: map[string]int{"speech": 2},
			FetchPollInterval: 20 * time.Millisecond,
		})
		const n = 12
		params := make([]river.InsertManyParams, n)
		for i := range params {
			params[i] = river.InsertManyParams{
				Args: sleepArgs{SleepMS: 100}, InsertOpts: &river.InsertOpts{Queue: "speech"},
			}
		}
		if _, err := q.InsertMany(ctx, params); err != nil {
			t.Fatalf("insert: %v", err)
		}
		start(t, q)
		waitFor(t, 20*time.Second, "all jobs completed", func() bool {
			return stats(t, q)[rivertype.JobStateCompleted] == n
		})
		if peak := worker.peak.Load(); peak != 2 {
			t.Errorf("peak concurrent jobs = %d, want 2", peak)
		}
		if started := worker.started.Load(); started != n {
			t.Errorf("worker started %d jobs, want %d", started, n)
		}
	})
}

func TestFromContextInsertsFollowUp(t *testing.T) {
	bothDBs(t, func(t *testing.T, db *testDB) {
		ctx := context.Background()
		workers := river.NewWorkers()
		river.AddWorker(workers, &sleepWorker{db: db})
		river.AddWorker(workers, river.WorkFunc(
			func(ctx context.Context, job *river.Job[transcribeArgs]) error {
				q, ok := jobs.FromContext(ctx)
				if !ok {
					return errors.New("no queue in job context")
				}
				_, _, err := q.Insert(ctx, sleepArgs{SleepMS: 1}, nil)
				return err
			}))
		q := db.open(t, jobs.Config{
			Workers:           workers,
			Queues:            map[string]int{river.QueueDefault: 1, "speech": 1},
			FetchPollInterval: 20 * time.Millisecond,
		})
		start(t, q)
		if _, _, err := q.Insert(ctx, transcribeArgs{RecordingID: "rec_f"}, nil); err != nil {
			t.Fatalf("insert: %v", err)
		}
		waitFor(t, 10*time.Second, "both jobs completed", func() bool {
			return stats(t, q)[rivertype.JobStateCompleted] == 2
		})
		if _, ok := jobs.FromContext(ctx); ok {
			t.Error("FromContext outside a job: ok = true")
		}
	})
}
