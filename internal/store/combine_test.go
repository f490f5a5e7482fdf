package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

type testCall struct {
	panics bool
	ran    bool
	err    error
}

// queued returns the number of calls in c's queue.
func queued[C any](c *combiner[C]) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// waitQueued waits until c has n queued calls.
func waitQueued[C any](t *testing.T, c *combiner[C], n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for queued(c) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", queued(c), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A group that panics leaves no call behind whose caller has gone: the
// caller that ran the group takes its own call out of the queue.
func TestCombinerPanicLeavesNoOrphan(t *testing.T) {
	c := &combiner[testCall]{
		slot: make(chan struct{}, 1),
		max:  1,
		run: func(_ context.Context, calls []*testCall) {
			if calls[0].panics {
				panic("group failed")
			}
			calls[0].ran = true
		},
		fail: func(call *testCall, err error) { call.err = err },
	}

	// The panicking call is queued first, by a caller that only waits for
	// its result. The caller of the good call then leads a group with the
	// panicking call alone, because max is 1.
	bad := &queuedCall[testCall]{call: &testCall{panics: true}, done: make(chan struct{})}
	c.queue = append(c.queue, bad)
	good := &testCall{}
	var panicked bool
	func() {
		defer func() { panicked = recover() != nil }()
		if err := c.do(context.Background(), good); err != nil {
			t.Errorf("do: %v", err)
		}
	}()

	if !panicked {
		t.Error("the leading caller did not see the panic")
	}
	<-bad.done
	if bad.call.err == nil {
		t.Error("panicking call: err = nil, want the panic as its error")
	}
	if n := queued(c); n != 0 {
		t.Errorf("%d calls left in the queue, want 0", n)
	}
	if good.ran {
		t.Error("call of a caller that panicked ran")
	}
}

// A caller whose context ends while its call is queued gets the context's
// error, and its call never runs.
func TestCombinerWithdrawsCancelledCall(t *testing.T) {
	c := &combiner[testCall]{
		slot: make(chan struct{}, 1),
		run: func(_ context.Context, calls []*testCall) {
			for _, call := range calls {
				call.ran = true
			}
		},
		fail: func(call *testCall, err error) { call.err = err },
	}
	c.slot <- struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	call := &testCall{}
	done := make(chan error, 1)
	go func() { done <- c.do(ctx, call) }()
	waitQueued(t, c, 1)
	cancel()

	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("do: err = %v, want context.Canceled", err)
	}
	<-c.slot
	if call.ran {
		t.Error("withdrawn call ran")
	}
	if n := queued(c); n != 0 {
		t.Errorf("%d calls left in the queue, want 0", n)
	}
}
