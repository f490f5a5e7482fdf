package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// RequestFunc builds request number seq of a load run. It is called from
// many goroutines at once.
type RequestFunc func(ctx context.Context, seq int64) (*http.Request, error)

// LoadResult is the outcome of a load run.
type LoadResult struct {
	Requests int64 `json:"requests"`
	// Errors counts transport failures and responses other than 2xx.
	Errors   int64         `json:"errors"`
	Duration time.Duration `json:"duration_ns"`
	// Rate is successful requests per second.
	Rate float64 `json:"rate_per_second"`
	// Latencies in milliseconds. For a paced run they start at the
	// request's scheduled time, so a server that falls behind shows its
	// queueing delay.
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	// FirstError is the first failure seen, for diagnosis.
	FirstError string `json:"first_error,omitempty"`
}

// NewClient returns an HTTP client with keep-alive connections, at most
// conns of them per host.
func NewClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = conns
	t.MaxConnsPerHost = conns
	t.DisableCompression = true
	return &http.Client{Transport: t, Timeout: time.Minute}
}

// recorder collects latencies and errors from load workers.
type recorder struct {
	mu        sync.Mutex
	latencies []time.Duration
	ok        atomic.Int64
	errs      atomic.Int64
	first     atomic.Value
}

func (r *recorder) add(workerLatencies []time.Duration) {
	r.mu.Lock()
	r.latencies = append(r.latencies, workerLatencies...)
	r.mu.Unlock()
}

func (r *recorder) fail(err error) {
	r.errs.Add(1)
	r.first.CompareAndSwap(nil, err.Error())
}

func (r *recorder) result(elapsed time.Duration) LoadResult {
	res := LoadResult{Requests: r.ok.Load() + r.errs.Load(), Errors: r.errs.Load(), Duration: elapsed}
	if elapsed > 0 {
		res.Rate = float64(r.ok.Load()) / elapsed.Seconds()
	}
	if s, ok := r.first.Load().(string); ok {
		res.FirstError = s
	}
	res.P50, res.P90, res.P99, res.Max = percentiles(r.latencies)
	return res
}

// percentiles returns nearest-rank p50, p90, p99 and max in milliseconds.
func percentiles(ds []time.Duration) (p50, p90, p99, maxMs float64) {
	if len(ds) == 0 {
		return 0, 0, 0, 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	rank := func(p float64) float64 {
		i := int(p*float64(len(sorted))+0.999999) - 1
		i = max(0, min(i, len(sorted)-1))
		return ms(sorted[i])
	}
	return rank(0.50), rank(0.90), rank(0.99), ms(sorted[len(sorted)-1])
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// send runs one request and reports an error for a transport failure or
// a status other than 2xx. The body is read to the end so that the
// connection is reused.
func send(ctx context.Context, client *http.Client, next RequestFunc, seq int64) error {
	req, err := next(ctx, seq)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, copyErr := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s: HTTP %d", req.Method, req.URL.Path, resp.StatusCode)
	}
	return copyErr
}

// Saturate runs a closed loop: conns workers each send a request as soon
// as the previous one is answered, for d. Its Rate is the throughput at
// saturation.
func Saturate(ctx context.Context, client *http.Client, conns int, d time.Duration, next RequestFunc) LoadResult {
	var rec recorder
	var seq atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			var local []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				err := send(ctx, client, next, seq.Add(1))
				if err != nil {
					if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
						break
					}
					rec.fail(err)
					continue
				}
				rec.ok.Add(1)
				local = append(local, time.Since(t0))
			}
			rec.add(local)
		})
	}
	wg.Wait()
	return rec.result(time.Since(start))
}

// Paced runs an open loop: requests are scheduled at a constant rate
// (per second) for d and sent by up to conns workers. Latency counts
// from each request's scheduled time, so requests that wait for a free
// worker count their wait.
func Paced(ctx context.Context, client *http.Client, conns int, rate float64, d time.Duration, next RequestFunc) LoadResult {
	var rec recorder
	total := int64(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	due := make(chan time.Time, conns)
	start := time.Now()
	var wg sync.WaitGroup
	var seq atomic.Int64
	for range conns {
		wg.Go(func() {
			var local []time.Duration
			for at := range due {
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				err := send(ctx, client, next, seq.Add(1))
				if err != nil {
					rec.fail(err)
					continue
				}
				rec.ok.Add(1)
				local = append(local, time.Since(at))
			}
			rec.add(local)
		})
	}
	for i := range total {
		if ctx.Err() != nil {
			break
		}
		at := start.Add(time.Duration(i) * interval)
		select {
		case due <- at:
		case <-ctx.Done():
		}
	}
	close(due)
	wg.Wait()
	return rec.result(time.Since(start))
}
