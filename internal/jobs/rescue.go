package jobs

import (
	"context"
	"errors"
	"fmt"
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
