package api_test

import (
	"testing"

	"github.com/botaserver/bota/internal/apitest"
)

// TestUniquenessPerTenant checks that external_id and serial_number are
// unique per project and mode, not across them.
func TestUniquenessPerTenant(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		other := env.OtherProject()
		keys := []string{env.TestKey, env.LiveKey, other.TestKey, other.LiveKey}

		endUsers := map[string]bool{}
		devices := map[string]bool{}
		for _, key := range keys {
			u := env.Do("POST", "/v1/end-users", key, map[string]any{"external_id": "shared", "email": "s@example.com"})
			env.ExpectStatus(u, 201)
			endUsers[str(u.Body, "id")] = true
			d := env.Do("POST", "/v1/devices", key, map[string]any{"serial_number": "SN-shared"})
			env.ExpectStatus(d, 201)
			devices[str(d.Body, "id")] = true
		}
		if len(endUsers) != len(keys) || len(devices) != len(keys) {
			t.Errorf("%d end users and %d devices, want %d each", len(endUsers), len(devices), len(keys))
		}
		for _, key := range keys {
			r := env.Do("GET", "/v1/end-users?external_id=shared", key, nil)
			if n := len(r.Data()); n != 1 {
				t.Errorf("lookup by external_id: %d rows, want 1", n)
			}
			r = env.Do("GET", "/v1/end-users?email=s@example.com", key, nil)
			if n := len(r.Data()); n != 1 {
				t.Errorf("lookup by email: %d rows, want 1", n)
			}
			r = env.Do("GET", "/v1/devices?serial_number=SN-shared", key, nil)
			if n := len(r.Data()); n != 1 {
				t.Errorf("lookup by serial_number: %d rows, want 1", n)
			}
		}

		// Setting an end user's external_id to its own value is no conflict.
		u := env.Do("GET", "/v1/end-users?external_id=shared", env.TestKey, nil).Data()[0]
		r := env.Do("PATCH", "/v1/end-users/"+str(u, "id"), env.TestKey, map[string]any{"external_id": "shared"})
		env.ExpectStatus(r, 200)
		// Clearing it frees the value for another end user.
		env.ExpectStatus(env.Do("PATCH", "/v1/end-users/"+str(u, "id"), env.TestKey,
			map[string]any{"external_id": nil}), 200)
		env.ExpectStatus(env.Do("POST", "/v1/end-users", env.TestKey, map[string]any{"external_id": "shared"}), 201)
		// Any number of end users may have no external_id.
		for range 3 {
			env.ExpectStatus(env.Do("POST", "/v1/end-users", env.TestKey, `{}`), 201)
		}
	})
}
