package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
)

// migrateLockKey is the PostgreSQL advisory lock key held while River's
// tables are migrated. It is an arbitrary constant (the ASCII of "botajobs")
// that no other part of bota uses.
const migrateLockKey int64 = 0x626f74616a6f6273

// Migrate creates or upgrades River's tables (river_job, river_leader,
// river_queue, ...) to the version this build of River expects. On
// PostgreSQL it holds a session advisory lock meanwhile, so processes that
// start at once migrate one after the other and the later ones find nothing
// to do. On SQLite it takes no lock: run it from one process at a time.
func (q *Queue) Migrate(ctx context.Context) error {
	var (
		res *rivermigrate.MigrateResult
		err error
	)
	if q.sqlite != nil {
		res, err = q.migrateSQLite(ctx)
	} else {
		res, err = q.migratePostgres(ctx)
	}
	if err != nil {
		return err
	}

	for _, v := range res.Versions {
		q.logger.InfoContext(ctx, "JobQueueMigrated",
			slog.Int("version", v.Version), slog.String("name", v.Name))
	}
	return nil
}

func (q *Queue) migrateSQLite(ctx context.Context) (*rivermigrate.MigrateResult, error) {
	migrator, err := rivermigrate.New(riversqlite.New(q.sqlite),
		&rivermigrate.Config{Logger: q.logger})
	if err != nil {
		return nil, fmt.Errorf("jobs: new SQLite migrator: %w", err)
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return nil, fmt.Errorf("jobs: migrate River tables on SQLite: %w", err)
	}
	return res, nil
}

func (q *Queue) migratePostgres(ctx context.Context) (_ *rivermigrate.MigrateResult, err error) {
	// A session lock (not pg_advisory_xact_lock) because River applies its
	// migrations in transactions of its own on other pool connections. The
	// lock lives on this one connection, which is held until the unlock.
	conn, err := q.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("jobs: acquire connection for migration lock: %w", err)
	}
	defer conn.Release()

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
		return nil, fmt.Errorf("jobs: take migration lock: %w", err)
	}
	defer func() {
		// The unlock runs even when ctx has ended, or the lock would stay
		// held for as long as the pool keeps this connection.
		_, unlockErr := conn.Exec(context.WithoutCancel(ctx),
			"SELECT pg_advisory_unlock($1)", migrateLockKey)
		if unlockErr != nil {
			err = errors.Join(err, fmt.Errorf("jobs: release migration lock: %w", unlockErr))
			// Closing the connection ends the session and with it the lock.
			if closeErr := conn.Conn().Close(context.WithoutCancel(ctx)); closeErr != nil {
				err = errors.Join(err, fmt.Errorf("jobs: close locked connection: %w", closeErr))
			}
		}
	}()

	migrator, err := rivermigrate.New(riverpgxv5.New(q.pool), &rivermigrate.Config{Logger: q.logger})
	if err != nil {
		return nil, fmt.Errorf("jobs: new PostgreSQL migrator: %w", err)
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return nil, fmt.Errorf("jobs: migrate River tables on PostgreSQL: %w", err)
	}
	return res, nil
}
