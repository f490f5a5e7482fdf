package jobs

import (
	"context"
	"database/sql"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// backend is the part of a River client that Queue uses. River's Client is
// generic over its driver's transaction type (*sql.Tx for SQLite, pgx.Tx for
// PostgreSQL), and riverClient adapts either one to this interface so that
// Queue itself is not generic.
type backend interface {
	start(ctx context.Context) error
	stop(ctx context.Context) error
	stopAndCancel(ctx context.Context) error
	stopped() <-chan struct{}
	insertMany(ctx context.Context, params []river.InsertManyParams) (
		[]*rivertype.JobInsertResult, error)
	job(ctx context.Context, id int64) (*rivertype.JobRow, error)
}

// riverClient is a backend over a River client of any transaction type.
type riverClient[TTx any] struct {
	client *river.Client[TTx]
}

var (
	_ backend = (*riverClient[*sql.Tx])(nil)
	_ backend = (*riverClient[any])(nil)
)

func (c *riverClient[TTx]) start(ctx context.Context) error { return c.client.Start(ctx) }

func (c *riverClient[TTx]) stop(ctx context.Context) error { return c.client.Stop(ctx) }

func (c *riverClient[TTx]) stopAndCancel(ctx context.Context) error {
	return c.client.StopAndCancel(ctx)
}

func (c *riverClient[TTx]) stopped() <-chan struct{} { return c.client.Stopped() }

func (c *riverClient[TTx]) insertMany(ctx context.Context, params []river.InsertManyParams) (
	[]*rivertype.JobInsertResult, error,
) {
	return c.client.InsertMany(ctx, params)
}

func (c *riverClient[TTx]) job(ctx context.Context, id int64) (*rivertype.JobRow, error) {
	return c.client.JobGet(ctx, id)
}
