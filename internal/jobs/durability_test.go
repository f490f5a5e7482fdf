package jobs_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/botaserver/bota/internal/jobs"
)

// insertSleepJobs inserts n sleep jobs on the default queue and returns
// their ids.
func insertSleepJobs(t *testing.T, q *jobs.Queue, n, sleepMS int) []int64 {
	t.Helper()
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: sleepArgs{SleepMS: sleepMS}}
	}
	results, err := q.InsertMany(context.Background(), params)
	if err != nil {
		t.Fatalf("insert %d jobs: %v", n, err)
	}
	ids := make([]int64, n)
	for i, r := range results {
		ids[i] = r.ID
	}
	return ids
}

// checkEachCompletedOnce asserts that every job in ids is completed and
// that its worker finished it exactly once.
func checkEachCompletedOnce(t *testing.T, db *testDB, q *jobs.Queue, ids []int64) {
	t.Helper()
	effects := db.effects(t)
	for _, id := range ids {
		if effects[id] != 1 {
			t.Errorf("job %d finished %d times, want exactly once", id, effects[id])
		}
		job, err := q.Job(context.Background(), id)
		if err != nil {
			t.Errorf("get job %d: %v", id, err)
			continue
		}
		if job.State != rivertype.JobStateCompleted {
			t.Errorf("job %d state %q, want completed", id, job.State)
		}
	}
	if len(effects) != len(ids) {
		t.Errorf("%d jobs finished, want %d", len(effects), len(ids))
	}
}

func TestStopMidRun(t *testing.T) {
	bothDBs(t, func(t *testing.T, db *testDB) {
		const n = 12
		newQueue := func() (*jobs.Queue, *sleepWorker) {
			workers := river.NewWorkers()
			worker := &sleepWorker{db: db}
			river.AddWorker(workers, worker)
			q := db.open(t, jobs.Config{
				Workers: workers, Queues: map[string]int{river.QueueDefault: 4},
				FetchPollInterval: 50 * time.Millisecond,
			})
			return q, worker
		}
		q1, w1 := newQueue()
		ids := insertSleepJobs(t, q1, n, 400)

		// A graceful stop lets the running jobs finish.
		start(t, q1)
		waitFor(t, 10*time.Second, "4 jobs running", func() bool { return w1.started.Load() >= 4 })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q1.Stop(ctx); err != nil {
			t.Fatalf("graceful stop: %v", err)
		}
		finished := len(db.effects(t))
		if finished == 0 || int64(finished) != w1.started.Load() {
			t.Errorf("after graceful stop %d jobs finished, want all %d started",
				finished, w1.started.Load())
		}
		if s := stats(t, q1); s[rivertype.JobStateRunning] != 0 {
			t.Errorf("after graceful stop %d jobs running, want 0", s[rivertype.JobStateRunning])
		}

		// A stop whose deadline passes cancels the running jobs, which go
		// back to available without using an attempt.
		q2, w2 := newQueue()
		start(t, q2)
		waitFor(t, 10*time.Second, "4 jobs running", func() bool { return w2.started.Load() >= 4 })
		short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancelShort()
		if err := q2.Stop(short); err != nil {
			t.Fatalf("stop at deadline: %v", err)
		}
		if w2.ended.Load() != w2.started.Load() {
			t.Errorf("after stop %d jobs returned of %d started", w2.ended.Load(), w2.started.Load())
		}
		s := stats(t, q2)
		if s[rivertype.JobStateRunning] != 0 {
			t.Errorf("after stop at deadline %d jobs running, want 0", s[rivertype.JobStateRunning])
		}
		for _, id := range ids {
			job, err := q2.Job(context.Background(), id)
			if err != nil {
				t.Fatalf("get job %d: %v", id, err)
			}
			if job.State == rivertype.JobStateAvailable && job.Attempt != 0 {
				t.Errorf("cancelled job %d has attempt %d, want 0", id, job.Attempt)
			}
		}

		// A new client finishes the rest.
		q3, _ := newQueue()
		start(t, q3)
		waitFor(t, 20*time.Second, "all jobs completed", func() bool {
			return stats(t, q3)[rivertype.JobStateCompleted] == n
		})
		checkEachCompletedOnce(t, db, q3, ids)
	})
}

const (
	crashChildEnv = "BOTA_JOBS_CRASH_CHILD" // a testDB name
	crashDSNEnv   = "BOTA_JOBS_CRASH_DSN"
	crashWorkers  = 4
)

// blockingWorker takes sleepArgs jobs and never finishes them: the process
// running it is killed with its jobs in the running state.
type blockingWorker struct {
	river.WorkerDefaults[sleepArgs]
}

func (blockingWorker) Work(ctx context.Context, _ *river.Job[sleepArgs]) error {
	<-ctx.Done()
	return ctx.Err()
}

// runCrashChild is the child process of TestCrashRescue. It works jobs with
// blockingWorker until it is killed, and returns an exit code on failure.
func runCrashChild() int {
	ctx := context.Background()
	cfg := jobs.Config{
		Workers: river.NewWorkers(), Queues: map[string]int{river.QueueDefault: crashWorkers},
		FetchPollInterval: 50 * time.Millisecond, Test: true,
	}
	river.AddWorker(cfg.Workers, blockingWorker{})

	switch {
	case strings.HasPrefix(os.Getenv(crashChildEnv), "sqlite"):
		db, err := sql.Open("sqlite", os.Getenv(crashDSNEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, "open SQLite:", err)
			return 2
		}
		cfg.SQLite = db
	default:
		pool, err := pgxpool.New(ctx, os.Getenv(crashDSNEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, "open PostgreSQL:", err)
			return 2
		}
		cfg.Pool = pool
	}

	q, err := jobs.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := q.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	select {} // until killed
}

// TestCrashRescue kills a process (SIGKILL) while it runs jobs, leaving them
// in the running state, and checks that a new client's rescuer gives them
// back to workers so that each job completes exactly once.
func TestCrashRescue(t *testing.T) {
	if testing.Short() {
		t.Skip("waits about 20 s for the dead client's leadership to expire")
	}
	bothDBs(t, func(t *testing.T, db *testDB) {
		const n = 8
		workers := river.NewWorkers()
		worker := &sleepWorker{db: db}
		river.AddWorker(workers, worker)
		q := db.open(t, jobs.Config{
			Workers: workers, Queues: map[string]int{river.QueueDefault: crashWorkers},
			FetchPollInterval: 50 * time.Millisecond,
			// A job takes 10 ms. The timeout leaves room for a slow disk, so
			// no job here times out and takes an extra attempt.
			JobTimeout:           5 * time.Second,
			RescueStuckJobsAfter: 6 * time.Second,
		})
		ids := insertSleepJobs(t, q, n, 10)

		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), crashChildEnv+"="+db.name, crashDSNEnv+"="+db.dsn)
		var childErr bytes.Buffer
		child.Stderr = &childErr
		if err := child.Start(); err != nil {
			t.Fatalf("start child: %v", err)
		}
		waitFor(t, 20*time.Second, "child running 4 jobs", func() bool {
			return stats(t, q)[rivertype.JobStateRunning] == crashWorkers
		})
		if err := child.Process.Kill(); err != nil {
			t.Fatalf("kill child: %v", err)
		}
		_ = child.Wait() // exits with "signal: killed"
		if childErr.Len() > 0 {
			t.Logf("child stderr:\n%s", childErr.String())
		}

		s := stats(t, q)
		if got := s[rivertype.JobStateRunning]; got != crashWorkers {
			t.Fatalf("after kill: %d jobs running, want %d", got, crashWorkers)
		}
		if got := s[rivertype.JobStateAvailable]; got != n-crashWorkers {
			t.Fatalf("after kill: %d jobs available, want %d", got, n-crashWorkers)
		}

		began := time.Now()
		start(t, q)
		waitFor(t, 90*time.Second, "all jobs completed", func() bool {
			return stats(t, q)[rivertype.JobStateCompleted] == n
		})
		t.Logf("%s: rescued and completed all jobs %s after restart", db.name, time.Since(began))
		checkEachCompletedOnce(t, db, q, ids)

		rescued := 0
		for _, id := range ids {
			job, err := q.Job(context.Background(), id)
			if err != nil {
				t.Fatalf("get job %d: %v", id, err)
			}
			if job.Attempt == 2 {
				rescued++
			}
		}
		if rescued != crashWorkers {
			t.Errorf("%d jobs took a second attempt, want the %d the dead process held",
				rescued, crashWorkers)
		}
	})
}
