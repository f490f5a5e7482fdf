package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// RescueAll makes every running job available again and returns how many
// there were. Call it before Start, and only where no other process can be
// working jobs of this database (a server that owns its SQLite file): it
// does not wait for RescueStuckJobsAfter.
func (q *Queue) RescueAll(ctx context.Context) (int64, error) {
	if q.sqlite == nil {
		return 0, errors.New("jobs: RescueAll is only safe on SQLite, which one process owns")
	}
	res, err := q.sqlite.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running'`)
	if err != nil {
		return 0, fmt.Errorf("jobs: rescue running jobs: %w", err)
	}
	return res.RowsAffected()
}

// RescueOrphans makes running jobs available again when the process that
// took them is not among alive (River client ids, which the server sets to
// its node ids) and took them more than grace ago. It returns how many it
// moved. On SQLite it does nothing: RescueAll covers the one process.
func (q *Queue) RescueOrphans(ctx context.Context, alive []string, grace time.Duration) (int64, error) {
	if q.pool == nil {
		return 0, nil
	}
	tag, err := q.pool.Exec(ctx, `UPDATE river_job SET state = 'available', scheduled_at = now()
		WHERE state = 'running'
		  AND attempted_at < now() - make_interval(secs => $2)
		  AND cardinality(attempted_by) > 0
		  AND NOT (attempted_by[cardinality(attempted_by)] = ANY($1))`,
		alive, grace.Seconds())
	if err != nil {
		return 0, fmt.Errorf("jobs: rescue orphaned jobs: %w", err)
	}
	return tag.RowsAffected(), nil
}
