package api_test

import (
	"testing"

	"github.com/botaserver/bota/internal/apitest"
)

func TestWrongMethodIs405(t *testing.T) {
	env := apitest.New(t, apitest.SQLite())
	cases := []struct {
		method, path, allow string
	}{
		{"PUT", "/v1/devices", "GET, POST"},
		{"DELETE", "/v1/recordings/rec_x/upload-url", "POST"},
		{"POST", "/v1/end-users/eu_x", "GET, PATCH, DELETE"},
	}
	for _, c := range cases {
		r := env.Do(c.method, c.path, env.TestKey, nil)
		env.ExpectError(r, 405, "method_not_allowed", "")
		if got := r.Header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow = %q, want %q", c.method, c.path, got, c.allow)
		}
	}
	r := env.Do("GET", "/v1/no-such-thing", env.TestKey, nil)
	env.ExpectError(r, 404, "not_found", "")
}
