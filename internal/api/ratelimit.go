package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/botaserver/bota/internal/auth"
)

// limiter keeps token buckets in memory. With several nodes each one
// enforces its share (limit / nodes), so the cluster as a whole holds the
// configured rate without a database write per request; the node count
// comes from the nodes table (SetClusterSize).
type limiter struct {
	mu      sync.Mutex
	cfg     Config
	nodes   int
	buckets map[string]*bucket
	now     func() time.Time
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter returns a limiter whose buckets refill by the time now
// returns.
func newLimiter(cfg Config, now func() time.Time) *limiter {
	return &limiter{cfg: cfg, nodes: 1, buckets: map[string]*bucket{}, now: now}
}

func (l *limiter) setNodes(n int) {
	if n < 1 {
		n = 1
	}
	l.mu.Lock()
	l.nodes = n
	l.mu.Unlock()
}

// rateLimitHeaders are the headers allow sets.
var rateLimitHeaders = []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}

// allow takes a token from the principal's bucket (and from the extra
// bucket named by extra), sets the X-RateLimit headers, and returns a 429
// error when a bucket is empty.
func (l *limiter) allow(w http.ResponseWriter, p *auth.Principal, extra string) error {
	if l.cfg.RateLimit <= 0 {
		return nil
	}
	var key string
	var rate, burst float64
	switch p.Kind {
	case auth.KindDevice:
		key, rate = "device:"+p.DeviceID, l.cfg.DeviceRateLimit
	case auth.KindUploadToken:
		key, rate = "upload:"+p.RecordingID, l.cfg.DeviceRateLimit
	default:
		key, rate = "project:"+p.ProjectID+":"+p.Mode, l.cfg.RateLimit
	}
	if rate <= 0 {
		// A zero device rate turns that limit off; an empty bucket that
		// never refills would lock the device out for good.
		return nil
	}
	burst = rate
	ok, remaining, reset, retry := l.take(key, rate, burst)
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(int(rate)))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	// Reset rounds up, so it is never earlier than the moment a token is
	// back.
	h.Set("X-RateLimit-Reset", strconv.FormatInt(int64(math.Ceil(float64(reset.UnixMilli())/1000)), 10))
	if !ok {
		return errRateLimited(retry)
	}
	if extra == "transcriptions" && l.cfg.TranscriptionRateLimit > 0 {
		perMinute := l.cfg.TranscriptionRateLimit
		ok, _, _, retry := l.take("transcriptions:"+p.ProjectID+":"+p.Mode, perMinute/60, perMinute)
		if !ok {
			return errRateLimited(retry)
		}
	}
	return nil
}

// take removes one token from the bucket and returns whether it could, the
// tokens left, when the bucket will next be full (or, when empty, hold one
// token), and the whole seconds until then, at least 1 when refused.
func (l *limiter) take(key string, rate, burst float64) (bool, int, time.Time, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	share := float64(l.nodes)
	rate, burst = rate/share, math.Max(1, burst/share)
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: burst, last: now}
		l.buckets[key] = b
	}
	// A clock set back refills nothing and restarts the count from now.
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = math.Min(burst, b.tokens+elapsed.Seconds()*rate)
	}
	b.last = now
	if now.Sub(l.swept) > time.Minute {
		l.sweep(now)
	}
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / rate * float64(time.Second))
		return false, 0, now.Add(wait), max(1, int(math.Ceil(wait.Seconds())))
	}
	b.tokens--
	full := time.Duration((burst - b.tokens) / rate * float64(time.Second))
	return true, int(b.tokens * share), now.Add(full), 0
}

// sweep removes buckets idle for ten minutes, because they would be full
// anyway.
func (l *limiter) sweep(now time.Time) {
	l.swept = now
	for k, b := range l.buckets {
		if now.Sub(b.last) > 10*time.Minute {
			delete(l.buckets, k)
		}
	}
}
