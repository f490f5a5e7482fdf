package api_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
)

func TestIdempotency(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, base *apitest.Env) {
		t.Run("concurrent creates make one end user", func(t *testing.T) {
			env := base.For(t).NewProject()
			const n = 20
			body := map[string]any{"external_id": "same-person", "name": "Ada"}
			responses := make([]*apitest.Response, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					responses[i] = env.Do("POST", "/v1/end-users", env.TestKey, body, "Idempotency-Key", "create-ada")
				})
			}
			wg.Wait()

			var created, replayed, inUse int
			var id string
			for _, r := range responses {
				switch {
				case r.Status == 201 && r.Header.Get("Idempotent-Replayed") == "true":
					replayed++
				case r.Status == 201:
					created++
				case r.Status == 409:
					env.ExpectError(r, 409, "idempotency_key_in_use", apitest.AnyParam)
					inUse++
					continue
				default:
					t.Fatalf("status %d, body %s", r.Status, r.Raw)
				}
				if id == "" {
					id = str(r.Body, "id")
				}
				if got := str(r.Body, "id"); got != id {
					t.Errorf("responses name two end users: %s and %s", id, got)
				}
			}
			if created != 1 {
				t.Errorf("%d first answers (not replayed), want 1; %d replays, %d in use", created, replayed, inUse)
			}
			list := env.Do("GET", "/v1/end-users", env.TestKey, nil)
			if d := list.Data(); len(d) != 1 || d[0]["id"] != id {
				t.Errorf("end users after 20 creates: %s", list.Raw)
			}
			// Once finished, every retry replays the stored response.
			again := env.Do("POST", "/v1/end-users", env.TestKey, body, "Idempotency-Key", "create-ada")
			if again.Status != 201 || again.Header.Get("Idempotent-Replayed") != "true" || str(again.Body, "id") != id {
				t.Errorf("replay: status %d, replayed %q, body %s", again.Status,
					again.Header.Get("Idempotent-Replayed"), again.Raw)
			}
		})

		t.Run("replay returns stored body", func(t *testing.T) {
			env := base.For(t)
			first := env.Do("POST", "/v1/devices", env.TestKey, map[string]any{"serial_number": "SN-idem"},
				"Idempotency-Key", "reg-1")
			env.ExpectStatus(first, 201)
			if first.Header.Get("Idempotent-Replayed") != "" {
				t.Errorf("first answer has Idempotent-Replayed")
			}
			second := env.Do("POST", "/v1/devices", env.TestKey, map[string]any{"serial_number": "SN-idem"},
				"Idempotency-Key", "reg-1")
			env.ExpectStatus(second, 201)
			if second.Header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("Idempotent-Replayed = %q", second.Header.Get("Idempotent-Replayed"))
			}
			if str(first.Body, "id") != str(second.Body, "id") ||
				str(first.Body, "created_at") != str(second.Body, "created_at") {
				t.Errorf("replay body differs:\n%s\n%s", first.Raw, second.Raw)
			}
			if second.Header.Get("Content-Type") != "application/json" {
				t.Errorf("replay Content-Type = %q", second.Header.Get("Content-Type"))
			}
		})

		t.Run("different body is refused", func(t *testing.T) {
			env := base.For(t)
			env.ExpectStatus(env.Do("POST", "/v1/end-users", env.TestKey, map[string]any{"name": "A"},
				"Idempotency-Key", "body-1"), 201)
			r := env.Do("POST", "/v1/end-users", env.TestKey, map[string]any{"name": "B"},
				"Idempotency-Key", "body-1")
			env.ExpectError(r, 400, "idempotency_key_reused", apitest.AnyParam)
		})

		t.Run("different endpoint is refused", func(t *testing.T) {
			env := base.For(t)
			env.ExpectStatus(env.Do("POST", "/v1/end-users", env.TestKey, `{}`, "Idempotency-Key", "ep-1"), 201)
			r := env.Do("POST", "/v1/devices", env.TestKey, `{}`, "Idempotency-Key", "ep-1")
			env.ExpectError(r, 400, "idempotency_key_reused", apitest.AnyParam)
		})

		t.Run("validation failure is not stored", func(t *testing.T) {
			env := base.For(t).NewProject()
			bad := env.Do("POST", "/v1/end-users", env.TestKey, map[string]any{"email": "nope"},
				"Idempotency-Key", "fix-1")
			env.ExpectError(bad, 400, "invalid_request", "email")
			good := env.Do("POST", "/v1/end-users", env.TestKey, map[string]any{"email": "a@example.com"},
				"Idempotency-Key", "fix-1")
			env.ExpectStatus(good, 201)
			if good.Header.Get("Idempotent-Replayed") != "" {
				t.Errorf("corrected retry was a replay")
			}
			if n := len(env.Do("GET", "/v1/end-users", env.TestKey, nil).Data()); n != 1 {
				t.Errorf("%d end users, want 1", n)
			}
		})

		t.Run("conflict is not stored", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			other := str(env.CreateEndUser(nil), "id")
			r := env.Do("POST", "/v1/devices/"+dev.DeviceID+"/bind", env.TestKey,
				map[string]any{"end_user_id": other}, "Idempotency-Key", "conflict-1")
			env.ExpectError(r, 409, "device_already_bound", "id")
			env.ExpectStatus(env.Do("POST", "/v1/devices/"+dev.DeviceID+"/unbind", env.TestKey, nil), 200)
			r = env.Do("POST", "/v1/devices/"+dev.DeviceID+"/bind", env.TestKey,
				map[string]any{"end_user_id": other}, "Idempotency-Key", "conflict-1")
			env.ExpectStatus(r, 200)
			if r.Body["end_user_id"] != other {
				t.Errorf("end_user_id = %v, want %s", r.Body["end_user_id"], other)
			}
		})

		t.Run("authentication failure is not stored", func(t *testing.T) {
			env := base.For(t)
			r := env.Do("POST", "/v1/end-users", "sk_test_wrong", `{}`, "Idempotency-Key", "auth-1")
			env.ExpectError(r, 401, "unauthorized", "")
			env.ExpectStatus(env.Do("POST", "/v1/end-users", env.TestKey, `{}`, "Idempotency-Key", "auth-1"), 201)
		})

		t.Run("keys are scoped to project and mode", func(t *testing.T) {
			env := base.For(t)
			other := env.OtherProject()
			ids := map[string]bool{}
			for _, key := range []string{env.TestKey, env.LiveKey, other.TestKey} {
				r := env.Do("POST", "/v1/end-users", key, `{}`, "Idempotency-Key", "scoped-1")
				env.ExpectStatus(r, 201)
				if r.Header.Get("Idempotent-Replayed") != "" {
					t.Errorf("key of another tenant replayed")
				}
				ids[str(r.Body, "id")] = true
			}
			if len(ids) != 3 {
				t.Errorf("%d distinct end users, want 3", len(ids))
			}
		})

		t.Run("bad key", func(t *testing.T) {
			env := base.For(t)
			for _, key := range []string{"has space", "dots.are.bad", strings.Repeat("k", 256)} {
				r := env.Do("POST", "/v1/end-users", env.TestKey, `{}`, "Idempotency-Key", key)
				env.ExpectError(r, 400, "invalid_request", "Idempotency-Key")
			}
			r := env.Do("POST", "/v1/end-users", env.TestKey, `{}`, "Idempotency-Key", strings.Repeat("k", 255))
			env.ExpectStatus(r, 201)
		})

		t.Run("bind replay issues a new token", func(t *testing.T) {
			env := base.For(t)
			eu := str(env.CreateEndUser(nil), "id")
			dev := str(env.RegisterDevice(), "id")
			body := map[string]any{"end_user_id": eu}
			first := env.Do("POST", "/v1/devices/"+dev+"/bind", env.TestKey, body, "Idempotency-Key", "bind-1")
			env.ExpectStatus(first, 200)
			second := env.Do("POST", "/v1/devices/"+dev+"/bind", env.TestKey, body, "Idempotency-Key", "bind-1")
			env.ExpectStatus(second, 200)
			if second.Header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("Idempotent-Replayed = %q", second.Header.Get("Idempotent-Replayed"))
			}
			t1, t2 := first.String("device_token"), second.String("device_token")
			if !strings.HasPrefix(t2, "dtok_") || t1 == t2 {
				t.Fatalf("replayed device_token = %q, first %q", t2, t1)
			}
			if second.Body["id"] != dev || second.Body["binding_generation"] != float64(1) {
				t.Errorf("replayed body = %s", second.Raw)
			}
			expectWorks(t, env, "token of the first answer", t1, false)
			expectWorks(t, env, "token of the replay", t2, true)
			if strings.Contains(env.Logs(), t1) || strings.Contains(env.Logs(), t2) {
				t.Errorf("server log contains a device token")
			}
		})

		t.Run("refresh replay issues a new token", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			first := env.Do("POST", "/v1/devices/me/token/refresh", dev.Token, nil, "Idempotency-Key", "ref-1")
			env.ExpectStatus(first, 200)
			second := env.Do("POST", "/v1/devices/me/token/refresh", dev.Token, nil, "Idempotency-Key", "ref-1")
			env.ExpectStatus(second, 200)
			if second.Header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("Idempotent-Replayed = %q", second.Header.Get("Idempotent-Replayed"))
			}
			t1, t2 := first.String("device_token"), second.String("device_token")
			if !strings.HasPrefix(t2, "dtok_") || t1 == t2 {
				t.Fatalf("replayed device_token = %q, first %q", t2, t1)
			}
			expectWorks(t, env, "token of the lost refresh", t1, false)
			expectWorks(t, env, "original token in its grace period", dev.Token, true)
			expectWorks(t, env, "token of the replay", t2, true)
			expectWorks(t, env, "original token after the replay's token is used", dev.Token, false)
		})

		t.Run("device keys are scoped to the device", func(t *testing.T) {
			env := base.For(t)
			a, b := env.NewBoundDevice(), env.NewBoundDevice()
			ra := env.Do("POST", "/v1/devices/me/heartbeat", a.Token, `{"battery_percent":10}`, "Idempotency-Key", "hb-1")
			rb := env.Do("POST", "/v1/devices/me/heartbeat", b.Token, `{"battery_percent":10}`, "Idempotency-Key", "hb-1")
			env.ExpectStatus(ra, 200)
			env.ExpectStatus(rb, 200)
			if rb.Header.Get("Idempotent-Replayed") != "" {
				t.Errorf("another device's heartbeat was a replay")
			}
			d := env.Do("GET", "/v1/devices/"+b.DeviceID, env.TestKey, nil).Body
			if d["battery_percent"] != float64(10) {
				t.Errorf("second device battery_percent = %v, want 10", d["battery_percent"])
			}
		})

		t.Run("stored responses hold no secret", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			r := env.Do("POST", "/v1/devices/"+dev.DeviceID+"/bind", env.TestKey,
				map[string]any{"end_user_id": dev.EndUserID}, "Idempotency-Key", "secret-1")
			env.ExpectStatus(r, 200)
			tok := r.String("device_token")
			var stored string
			row := env.Store.DB().QueryRow(env.Store.Dialect().Rebind(
				`SELECT response FROM idempotency_keys WHERE key = ?`), "secret-1")
			if err := row.Scan(&stored); err != nil {
				t.Fatalf("read stored response: %v", err)
			}
			if strings.Contains(stored, tok) || strings.Contains(stored, "dtok_") {
				t.Errorf("stored response contains the device token: %s", stored)
			}
		})
	})
}
