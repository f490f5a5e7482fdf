package jobs_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/botaserver/bota/internal/jobs"
)

// benchDBs runs fn as one sub-benchmark per database, and on SQLite both
// with database/sql's unlimited pool and with one connection.
func benchDBs(b *testing.B, fn func(b *testing.B, db *testDB)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, newSQLiteDB(b)) })
	b.Run("sqlite-1conn", func(b *testing.B) { fn(b, newSQLiteDBConns(b, 1)) })
	b.Run("postgres", func(b *testing.B) { fn(b, newPostgresDB(b)) })
}

func insertOnlyQueue(b *testing.B, db *testDB) *jobs.Queue {
	workers := river.NewWorkers()
	river.AddWorker(workers, &sleepWorker{db: db})
	return db.open(b, jobs.Config{Workers: workers})
}

// BenchmarkInsert measures one Insert (its own transaction) at a time.
func BenchmarkInsert(b *testing.B) {
	benchDBs(b, func(b *testing.B, db *testDB) {
		q := insertOnlyQueue(b, db)
		ctx := context.Background()
		for b.Loop() {
			if _, _, err := q.Insert(ctx, sleepArgs{SleepMS: 1}, nil); err != nil {
				b.Fatalf("insert: %v", err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
}

// BenchmarkInsertUnique measures Insert of a unique kind, whose key River
// hashes and checks against a unique index.
func BenchmarkInsertUnique(b *testing.B) {
	benchDBs(b, func(b *testing.B, db *testDB) {
		workers := river.NewWorkers()
		river.AddWorker(workers, river.WorkFunc(
			func(context.Context, *river.Job[transcribeArgs]) error { return nil }))
		q := db.open(b, jobs.Config{Workers: workers})
		ctx := context.Background()
		i := 0
		for b.Loop() {
			i++
			args := transcribeArgs{RecordingID: fmt.Sprintf("rec_%d", i)}
			if _, _, err := q.Insert(ctx, args, nil); err != nil {
				b.Fatalf("insert: %v", err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
}

// BenchmarkInsertParallel measures Insert from 8 goroutines per core at
// once, the pattern of concurrent API requests.
func BenchmarkInsertParallel(b *testing.B) {
	benchDBs(b, func(b *testing.B, db *testDB) {
		q := insertOnlyQueue(b, db)
		ctx := context.Background()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := q.Insert(ctx, sleepArgs{SleepMS: 1}, nil); err != nil {
					b.Errorf("insert: %v", err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
}

// BenchmarkInsertMany measures batches of 100 jobs in one transaction.
func BenchmarkInsertMany(b *testing.B) {
	benchDBs(b, func(b *testing.B, db *testDB) {
		q := insertOnlyQueue(b, db)
		ctx := context.Background()
		params := make([]river.InsertManyParams, 100)
		for i := range params {
			params[i] = river.InsertManyParams{Args: sleepArgs{SleepMS: 1}}
		}
		for b.Loop() {
			if _, err := q.InsertMany(ctx, params); err != nil {
				b.Fatalf("insert: %v", err)
			}
		}
		b.ReportMetric(float64(b.N*len(params))/b.Elapsed().Seconds(), "jobs/s")
	})
}

// pickupArgs is a job whose worker reports when it starts.
type pickupArgs struct{}

func (pickupArgs) Kind() string { return "test_pickup" }

// BenchmarkPickupLatency measures the time from Insert returning to the
// worker starting, on an idle queue with River's default fetch settings.
// PostgreSQL wakes the queue with LISTEN/NOTIFY; River's SQLite driver polls
// a notification table every 50 ms. Each iteration first waits 200 ms, so
// River's 100 ms fetch cooldown after the previous job has passed. ns/op
// includes that wait, but the p50-ms and p90-ms metrics do not.
func BenchmarkPickupLatency(b *testing.B) {
	benchDBs(b, func(b *testing.B, db *testDB) {
		started := make(chan time.Time, 1)
		workers := river.NewWorkers()
		river.AddWorker(workers, river.WorkFunc(
			func(context.Context, *river.Job[pickupArgs]) error {
				started <- time.Now()
				return nil
			}))
		q := db.open(b, jobs.Config{Workers: workers, Queues: map[string]int{river.QueueDefault: 1}})
		start(b, q)
		ctx := context.Background()

		var latencies []time.Duration
		for b.Loop() {
			time.Sleep(200 * time.Millisecond)
			if _, _, err := q.Insert(ctx, pickupArgs{}, nil); err != nil {
				b.Fatalf("insert: %v", err)
			}
			inserted := time.Now()
			select {
			case at := <-started:
				latencies = append(latencies, at.Sub(inserted))
			case <-time.After(10 * time.Second):
				b.Fatal("job not picked up within 10 s")
			}
		}
		slices.Sort(latencies)
		b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(latencies[len(latencies)*9/10].Microseconds())/1000, "p90-ms")
	})
}

// TestLoadWithoutLockErrors inserts 400 jobs from 4 goroutines while 8
// workers run them and write a row each, all on one database, and checks
// that every job completes once and River logs no lock failures.
func TestLoadWithoutLockErrors(t *testing.T) {
	bothDBs(t, runLoad)
	t.Run("sqlite-1conn", func(t *testing.T) {
		t.Parallel()
		runLoad(t, newSQLiteDBConns(t, 1))
	})
}

func runLoad(t *testing.T, db *testDB) {
	const inserters, perInserter = 4, 100
	workers := river.NewWorkers()
	worker := &sleepWorker{db: db}
	river.AddWorker(workers, worker)
	q := db.open(t, jobs.Config{
		Workers: workers, Queues: map[string]int{river.QueueDefault: 8},
		FetchPollInterval: 50 * time.Millisecond,
	})
	start(t, q)

	began := time.Now()
	var (
		mu  sync.Mutex
		ids []int64
		wg  sync.WaitGroup
	)
	for range inserters {
		wg.Go(func() {
			for range perInserter {
				id, _, err := q.Insert(context.Background(), sleepArgs{SleepMS: 5}, nil)
				if err != nil {
					t.Errorf("insert: %v", err)
					return
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	waitFor(t, 60*time.Second, "all jobs completed", func() bool {
		return stats(t, q)[rivertype.JobStateCompleted] == inserters*perInserter
	})
	t.Logf("%s: %d jobs inserted and completed in %s", db.name, len(ids), time.Since(began))
	checkEachCompletedOnce(t, db, q, ids)
	if locks := db.logs.lockErrors(); len(locks) > 0 {
		t.Errorf("River logged %d lock errors, first: %s", len(locks), locks[0])
	}
	if all := db.logs.matching("ERROR"); len(all) > 0 {
		t.Errorf("River logged %d errors, first: %s", len(all), all[0])
	}
}
