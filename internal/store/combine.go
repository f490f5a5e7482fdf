package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// combiner runs concurrent calls of one kind together, so that one
// statement or one transaction serves many callers. A caller queues its
// call and then waits for a slot. The caller that gets a slot takes the
// calls queued by then, up to max, runs them as one group and hands each
// its own result. Calls that arrive while a group runs form the next one:
// under load a round trip serves many calls, and a lone call runs at once.
type combiner[C any] struct {
	// slot limits how many groups run at once to its capacity.
	slot chan struct{}
	// max limits a group's size. With 0, a group takes every queued call.
	max int
	// run runs a group and stores each call's result in the call.
	run func(ctx context.Context, calls []*C)
	// fail stores err as a call's result.
	fail func(call *C, err error)

	mu    sync.Mutex
	queue []*queuedCall[C]
}

type queuedCall[C any] struct {
	call *C
	done chan struct{}
}

// do queues call and returns once a group has run it, with the result in
// call. It returns the context's error, without running call, when ctx
// ends while call is still queued.
func (c *combiner[C]) do(ctx context.Context, call *C) error {
	q := &queuedCall[C]{call: call, done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, q)
	c.mu.Unlock()

	for {
		select {
		case c.slot <- struct{}{}:
			c.leadFor(ctx, q)
			// With a limit on group size, the group may have ended before
			// this call, which then waits for the next slot.
			select {
			case <-q.done:
				return nil
			default:
			}
		case <-q.done:
			return nil
		case <-ctx.Done():
			if c.withdraw(q) {
				return ctx.Err()
			}
			// A group took the call already, so its result follows.
			<-q.done
			return nil
		}
	}
}

// leadFor runs the next group for the caller of q. When the group panics,
// q leaves the queue first if the group did not contain it, so that no
// later group runs a call whose caller is gone.
func (c *combiner[C]) leadFor(ctx context.Context, q *queuedCall[C]) {
	defer func() {
		if v := recover(); v != nil {
			c.withdraw(q)
			panic(v)
		}
	}()
	c.lead(ctx)
}

// lead runs the next group while holding a slot, and releases it.
func (c *combiner[C]) lead(ctx context.Context) {
	defer func() { <-c.slot }()
	c.mu.Lock()
	n := len(c.queue)
	if c.max > 0 && n > c.max {
		n = c.max
	}
	group := slices.Clone(c.queue[:n])
	c.queue = slices.Delete(c.queue, 0, n)
	c.mu.Unlock()
	if n > 0 {
		// A caller that leaves does not cancel the others' calls.
		c.runGroup(context.WithoutCancel(ctx), group)
	}
}

// runGroup runs group and closes every call's done channel. A panic fails
// every call of the group, so that no caller waits forever.
func (c *combiner[C]) runGroup(ctx context.Context, group []*queuedCall[C]) {
	defer func() {
		if v := recover(); v != nil {
			for _, q := range group {
				c.fail(q.call, fmt.Errorf("combined call panicked: %v", v))
				close(q.done)
			}
			panic(v)
		}
	}()
	calls := make([]*C, len(group))
	for i, q := range group {
		calls[i] = q.call
	}
	c.run(ctx, calls)
	for _, q := range group {
		close(q.done)
	}
}

// withdraw removes q from the queue and reports whether it was still
// there.
func (c *combiner[C]) withdraw(q *queuedCall[C]) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.queue, q)
	if i < 0 {
		return false
	}
	c.queue = slices.Delete(c.queue, i, i+1)
	return true
}

// paddedSize returns the smallest power of two not below n. Statements
// built for padded sizes come in a few texts, each prepared once.
func paddedSize(n int) int {
	size := 1
	for size < n {
		size *= 2
	}
	return size
}
