package api_test

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/apitest"
)

var cursorPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// registerMany registers n devices with 4 concurrent clients and returns
// their ids.
func registerMany(env *apitest.Env, n int) map[string]bool {
	env.T().Helper()
	var mu sync.Mutex
	out := map[string]bool{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				r := env.Do("POST", "/v1/devices", env.TestKey,
					map[string]any{"serial_number": "page-" + strconv.FormatInt(i, 10)})
				if r.Status != 201 {
					env.T().Errorf("register device %d: %d %s", i, r.Status, r.Raw)
					return
				}
				mu.Lock()
				out[str(r.Body, "id")] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(out) != n {
		env.T().Fatalf("registered %d devices, want %d", len(out), n)
	}
	return out
}

// pageThrough lists path by cursor and calls between after every page. It
// returns the ids in the order seen and fails on a repeated id, a page out
// of order, or a malformed cursor.
func pageThrough(t *testing.T, env *apitest.Env, path string, limit int, between func()) []string {
	t.Helper()
	var seen []string
	seenSet := map[string]bool{}
	cursor := ""
	for page := 0; ; page++ {
		q := path + "?limit=" + strconv.Itoa(limit)
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		r := env.Do("GET", q, env.TestKey, nil)
		env.ExpectStatus(r, 200)
		checkList(t, r)
		data := r.Data()
		if len(data) > limit {
			t.Fatalf("page %d has %d rows, limit %d", page, len(data), limit)
		}
		for i, row := range data {
			id := str(row, "id")
			if seenSet[id] {
				t.Fatalf("page %d repeats %s", page, id)
			}
			seenSet[id] = true
			seen = append(seen, id)
			if i > 0 && !sortsBefore(data[i-1], row) {
				t.Errorf("page %d: %v before %v is not newest first", page, data[i-1], row)
			}
		}
		more, _ := r.Body["has_more"].(bool)
		if !more {
			if r.Body["next_cursor"] != nil {
				t.Errorf("last page next_cursor = %v, want null", r.Body["next_cursor"])
			}
			return seen
		}
		if len(data) != limit {
			t.Errorf("page %d has %d rows with has_more, want %d", page, len(data), limit)
		}
		cursor = str(r.Body, "next_cursor")
		if !cursorPattern.MatchString(cursor) {
			t.Fatalf("next_cursor %q is not URL-safe", cursor)
		}
		if between != nil {
			between()
		}
	}
}

// sortsBefore reports whether a comes before b in newest-first order with
// the id as tie-breaker.
func sortsBefore(a, b map[string]any) bool {
	ca, cb := str(a, "created_at"), str(b, "created_at")
	if ca != cb {
		return ca > cb
	}
	return str(a, "id") > str(b, "id")
}

func TestPaginationCursorUnderInserts(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		// Every device gets the same created_at, so only the id orders
		// them and new rows land between old ones on every page.
		env.Clock.Freeze()
		originals := registerMany(env, 250)

		for _, limit := range []int{100, 7} {
			t.Run("limit "+strconv.Itoa(limit), func(t *testing.T) {
				env := env.For(t)
				stop := make(chan struct{})
				var wg sync.WaitGroup
				var extra atomic.Int64
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						n := extra.Add(1)
						env.Do("POST", "/v1/devices", env.TestKey, map[string]any{
							"serial_number": "bg-" + strconv.Itoa(limit) + "-" + strconv.FormatInt(n, 10)})
					}
				})
				between := func() {
					for range 3 {
						env.RegisterDevice()
					}
				}
				seen := pageThrough(t, env, "/v1/devices", limit, between)
				close(stop)
				wg.Wait()

				count := map[string]int{}
				for _, id := range seen {
					count[id]++
				}
				for id := range originals {
					if count[id] != 1 {
						t.Errorf("original device %s seen %d times", id, count[id])
					}
				}
				if extra.Load() == 0 {
					t.Errorf("no device was inserted while paging")
				}
			})
		}
	})
}

func TestPaginationDistinctTimes(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		env.Clock.Freeze()
		want := map[string]bool{}
		for i := range 40 {
			// Groups of four share a millisecond.
			if i%4 == 0 {
				env.Clock.Advance(time.Millisecond)
			}
			want[str(env.CreateEndUser(nil), "id")] = true
		}
		seen := pageThrough(t, env, "/v1/end-users", 7, func() {
			env.Clock.Advance(time.Millisecond)
			env.CreateEndUser(nil)
		})
		found := 0
		for _, id := range seen {
			if want[id] {
				found++
			}
		}
		if found != len(want) {
			t.Errorf("saw %d of %d end users", found, len(want))
		}
	})
}

func TestPaginationOffset(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		env.Clock.Freeze()
		all := registerMany(env, 60)
		byCursor := pageThrough(t, env, "/v1/devices", 100, nil)

		var byOffset []string
		for offset := 0; ; offset += 25 {
			r := env.Do("GET", "/v1/devices?limit=25&offset="+strconv.Itoa(offset), env.TestKey, nil)
			env.ExpectStatus(r, 200)
			for _, row := range r.Data() {
				byOffset = append(byOffset, str(row, "id"))
			}
			if r.Body["has_more"] != true {
				if r.Body["next_cursor"] != nil {
					t.Errorf("last offset page next_cursor = %v", r.Body["next_cursor"])
				}
				break
			}
		}
		if strings.Join(byOffset, ",") != strings.Join(byCursor, ",") {
			t.Errorf("offset order differs from cursor order:\n%v\n%v", byOffset, byCursor)
		}
		if len(byOffset) != len(all) {
			t.Errorf("offset paging saw %d devices, want %d", len(byOffset), len(all))
		}

		r := env.Do("GET", "/v1/devices", env.TestKey, nil)
		if n := len(r.Data()); n != 25 || r.Body["has_more"] != true {
			t.Errorf("default page: %d rows, has_more %v; want 25, true", n, r.Body["has_more"])
		}
		r = env.Do("GET", "/v1/devices?offset=1000", env.TestKey, nil)
		if n := len(r.Data()); r.Status != 200 || n != 0 || r.Body["has_more"] != false {
			t.Errorf("offset past the end: %d %s", r.Status, r.Raw)
		}
	})
}

func TestPaginationErrors(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		for range 3 {
			env.RegisterDevice()
		}
		r := env.Do("GET", "/v1/devices?limit=1", env.TestKey, nil)
		cursor := str(r.Body, "next_cursor")
		if cursor == "" {
			t.Fatalf("no next_cursor: %s", r.Raw)
		}
		raw, sig, _ := strings.Cut(cursor, ".")
		decoded, err := base64.RawURLEncoding.DecodeString(raw)
		if err != nil {
			t.Fatalf("cursor body is not base64url: %v", err)
		}
		forged := base64.RawURLEncoding.EncodeToString(
			[]byte(strings.Replace(string(decoded), `"i":"dev_`, `"i":"dev_0`, 1))) + "." + sig
		flipped := raw + "." + flip(sig)
		other := apitest.New(t, apitest.SQLite())
		for range 2 {
			other.RegisterDevice()
		}
		foreign := str(other.Do("GET", "/v1/devices?limit=1", other.TestKey, nil).Body, "next_cursor")

		cases := []struct {
			name, query, param string
		}{
			{"limit 0", "limit=0", "limit"},
			{"limit 101", "limit=101", "limit"},
			{"limit abc", "limit=abc", "limit"},
			{"limit negative", "limit=-1", "limit"},
			{"limit fraction", "limit=1.5", "limit"},
			{"offset negative", "offset=-1", "offset"},
			{"offset abc", "offset=abc", "offset"},
			{"offset and cursor", "offset=1&cursor=" + cursor, apitest.AnyParam},
			{"cursor garbage", "cursor=abc", "cursor"},
			{"cursor no signature", "cursor=" + raw, "cursor"},
			{"cursor forged body", "cursor=" + forged, "cursor"},
			{"cursor flipped signature", "cursor=" + flipped, "cursor"},
			{"cursor of another server", "cursor=" + foreign, "cursor"},
			{"cursor too long", "cursor=" + strings.Repeat("A", 600) + "." + sig, "cursor"},
			{"cursor not base64", "cursor=" + url.QueryEscape("!!!.???"), "cursor"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				env := env.For(t)
				for _, path := range []string{"/v1/devices", "/v1/end-users"} {
					r := env.Do("GET", path+"?"+tc.query, env.TestKey, nil)
					env.ExpectError(r, 400, "invalid_request", tc.param)
				}
			})
		}
		if r := env.Do("GET", "/v1/devices?limit=1&cursor="+cursor, env.TestKey, nil); r.Status != 200 {
			t.Errorf("valid cursor: %d %s", r.Status, r.Raw)
		}
		if r := env.Do("GET", "/v1/devices?limit=100", env.TestKey, nil); r.Status != 200 {
			t.Errorf("limit 100: %d %s", r.Status, r.Raw)
		}
	})
}

// flip changes the first character of s to another base64url character.
func flip(s string) string {
	if s == "" {
		return "A"
	}
	c := byte('A')
	if s[0] == 'A' {
		c = 'B'
	}
	return string(c) + s[1:]
}
