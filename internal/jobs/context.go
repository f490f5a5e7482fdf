package jobs

import (
	"context"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

type queueContextKey struct{}

// queueContextMiddleware puts the Queue into each job's context, so that a
// worker can insert follow-up jobs without knowing River's transaction type
// (river.ClientFromContext needs it).
type queueContextMiddleware struct {
	river.MiddlewareDefaults
	queue *Queue
}

var _ rivertype.WorkerMiddleware = (*queueContextMiddleware)(nil)

func (m *queueContextMiddleware) Work(ctx context.Context, _ *rivertype.JobRow,
	doInner func(context.Context) error,
) error {
	return doInner(context.WithValue(ctx, queueContextKey{}, m.queue))
}

// FromContext returns the Queue that is running the current job. ok is false
// outside a worker's Work.
func FromContext(ctx context.Context) (q *Queue, ok bool) {
	q, ok = ctx.Value(queueContextKey{}).(*Queue)
	return q, ok
}
