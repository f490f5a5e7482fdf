package api_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/apitest"
)

func TestRateLimit(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		dev := env.NewBoundDevice()
		// Buckets refill by the store's clock: stopped, the test decides
		// how much time passes. The setup above drained the project's
		// bucket, so let it fill (3 tokens at 3 per second).
		env.Clock.Freeze()
		env.Clock.Advance(1100 * time.Millisecond)

		var statuses []int
		var limited *apitest.Response
		for range 10 {
			r := env.Do("GET", "/v1/devices", env.TestKey, nil)
			statuses = append(statuses, r.Status)
			if r.Status == 429 {
				limited = r
				break
			}
			if got := r.Header.Get("X-RateLimit-Limit"); got != "3" {
				t.Errorf("X-RateLimit-Limit = %q, want 3", got)
			}
			if _, err := strconv.Atoi(r.Header.Get("X-RateLimit-Remaining")); err != nil {
				t.Errorf("X-RateLimit-Remaining = %q", r.Header.Get("X-RateLimit-Remaining"))
			}
		}
		if limited == nil {
			t.Fatalf("no 429 after %v", statuses)
		}
		if len(statuses) != 4 {
			t.Errorf("statuses %v, want three 200s, then 429", statuses)
		}
		env.ExpectError(limited, 429, "rate_limit_exceeded", "")
		retry, err := strconv.Atoi(limited.Header.Get("Retry-After"))
		if err != nil || retry != 1 {
			t.Errorf("Retry-After = %q, want 1 second", limited.Header.Get("Retry-After"))
		}
		if got := limited.Header.Get("X-RateLimit-Remaining"); got != "0" {
			t.Errorf("429 X-RateLimit-Remaining = %q, want 0", got)
		}
		reset, err := strconv.ParseInt(limited.Header.Get("X-RateLimit-Reset"), 10, 64)
		if now := env.Clock.Now().Unix(); err != nil || reset < now || reset > now+5 {
			t.Errorf("X-RateLimit-Reset = %q, now %d", limited.Header.Get("X-RateLimit-Reset"), now)
		}

		// Devices have their own buckets, so an exhausted project key
		// does not starve them.
		hb := env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{}`)
		env.ExpectStatus(hb, 200)
		if got := hb.Header.Get("X-RateLimit-Limit"); got != "2" {
			t.Errorf("device X-RateLimit-Limit = %q, want 2", got)
		}
		// Another mode is another bucket.
		env.ExpectStatus(env.Do("GET", "/v1/devices", env.LiveKey, nil), 200)

		var devLimited *apitest.Response
		for range 5 {
			r := env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{}`)
			if r.Status == 429 {
				devLimited = r
				break
			}
		}
		if devLimited == nil {
			t.Fatalf("device never rate limited")
		}
		env.ExpectError(devLimited, 429, "rate_limit_exceeded", "")
		if devLimited.Header.Get("Retry-After") == "" {
			t.Errorf("device 429 has no Retry-After")
		}

		env.Clock.Advance(time.Duration(retry) * time.Second)
		env.ExpectStatus(env.Do("GET", "/v1/devices", env.TestKey, nil), 200)
	}, apitest.WithRateLimit(3, 2))
}

func TestRateLimitOff(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		dev := env.NewBoundDevice()
		for range 50 {
			r := env.Do("GET", "/v1/devices", env.TestKey, nil)
			env.ExpectStatus(r, 200)
			for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"} {
				if v := r.Header.Get(h); v != "" {
					t.Fatalf("%s = %q with rate limits off", h, v)
				}
			}
		}
		for range 30 {
			r := env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{}`)
			env.ExpectStatus(r, 200)
			if v := r.Header.Get("X-RateLimit-Limit"); v != "" {
				t.Fatalf("device X-RateLimit-Limit = %q with rate limits off", v)
			}
		}
	})
}

// A device rate of 0 turns the device limit off while the project limit
// still holds.
func TestDeviceRateLimitZero(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		dev := env.NewBoundDevice()
		for i := range 20 {
			r := env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{}`)
			if r.Status != 200 {
				t.Fatalf("heartbeat %d: %d %s", i, r.Status, r.Raw)
			}
			if v := r.Header.Get("X-RateLimit-Reset"); strings.HasPrefix(v, "-") {
				t.Fatalf("X-RateLimit-Reset = %q", v)
			}
		}
	}, apitest.WithRateLimit(100, 0))
}
