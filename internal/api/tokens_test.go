package api_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/apitest"
)

// works reports whether token can send a heartbeat for its device, and
// fails the test on any status other than 200 or 401.
func works(env *apitest.Env, token string) bool {
	env.T().Helper()
	r := env.Do("POST", "/v1/devices/me/heartbeat", token, `{}`)
	switch r.Status {
	case 200:
		return true
	case 401:
		env.ExpectError(r, 401, "unauthorized", "")
		return false
	}
	env.T().Fatalf("heartbeat: status %d, body %s", r.Status, r.Raw)
	return false
}

func refresh(env *apitest.Env, token string) string {
	env.T().Helper()
	r := env.Do("POST", "/v1/devices/me/token/refresh", token, nil)
	env.ExpectStatus(r, 200)
	next := r.String("device_token")
	if !strings.HasPrefix(next, "dtok_") || next == token {
		env.T().Fatalf("refresh: device_token = %q", next)
	}
	return next
}

func expectWorks(t *testing.T, env *apitest.Env, what, token string, want bool) {
	t.Helper()
	if got := works(env, token); got != want {
		t.Errorf("%s works = %v, want %v", what, got, want)
	}
}

func TestDeviceTokenLifecycle(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, base *apitest.Env) {
		t.Run("refresh keeps old token until new one is used", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			next := refresh(env, dev.Token)
			expectWorks(t, env, "old token before the new one is used", dev.Token, true)
			expectWorks(t, env, "old token again", dev.Token, true)
			expectWorks(t, env, "new token", next, true)
			expectWorks(t, env, "old token after the new one is used", dev.Token, false)
			expectWorks(t, env, "new token again", next, true)
		})

		t.Run("refresh response is the device", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			r := env.Do("POST", "/v1/devices/"+dev.DeviceID+"/token/refresh", dev.Token, nil)
			env.ExpectStatus(r, 200)
			checkDevice(t, env, r.Body)
			if r.Body["id"] != dev.DeviceID || r.Body["end_user_id"] != dev.EndUserID {
				t.Errorf("refresh body = %v", r.Body)
			}
		})

		t.Run("grace period ends after 10 minutes", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			// Stopped, the clock keeps the one-second margins exact however
			// slow the requests are.
			env.Clock.Freeze()
			defer env.Clock.Resume()
			next := refresh(env, dev.Token)
			env.Clock.Advance(10*time.Minute - time.Second)
			expectWorks(t, env, "old token at 9m59s", dev.Token, true)
			env.Clock.Advance(2 * time.Second)
			expectWorks(t, env, "old token at 10m01s", dev.Token, false)
			expectWorks(t, env, "new token after the grace period", next, true)
		})

		t.Run("lost refresh response twice", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			lost := refresh(env, dev.Token)
			next := refresh(env, dev.Token)
			expectWorks(t, env, "token of the lost response", lost, false)
			expectWorks(t, env, "original token", dev.Token, true)
			expectWorks(t, env, "latest token", next, true)
			expectWorks(t, env, "original token after the latest is used", dev.Token, false)
		})

		t.Run("second refresh does not extend the grace period", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			refresh(env, dev.Token)
			env.Clock.Advance(6 * time.Minute)
			refresh(env, dev.Token)
			env.Clock.Advance(5 * time.Minute)
			expectWorks(t, env, "original token 11 minutes after its first refresh", dev.Token, false)
		})

		t.Run("refresh with the new token ends the old one", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			second := refresh(env, dev.Token)
			third := refresh(env, second)
			expectWorks(t, env, "first token", dev.Token, false)
			expectWorks(t, env, "second token before the third is used", second, true)
			expectWorks(t, env, "third token", third, true)
			expectWorks(t, env, "second token after the third is used", second, false)
		})

		t.Run("rebind to same end user reissues at once", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			r := env.Do("POST", "/v1/devices/"+dev.DeviceID+"/bind", env.TestKey,
				map[string]any{"end_user_id": dev.EndUserID})
			env.ExpectStatus(r, 200)
			next := r.String("device_token")
			if !strings.HasPrefix(next, "dtok_") || next == dev.Token {
				t.Fatalf("rebind device_token = %q", next)
			}
			if r.Body["binding_generation"] != float64(1) || r.Body["status"] != "bound" {
				t.Errorf("rebind: generation %v, status %v; want 1, bound",
					r.Body["binding_generation"], r.Body["status"])
			}
			expectWorks(t, env, "old token after rebind", dev.Token, false)
			expectWorks(t, env, "rebind token", next, true)
		})

		t.Run("bind to other end user", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			other := str(env.CreateEndUser(nil), "id")
			r := env.Do("POST", "/v1/devices/"+dev.DeviceID+"/bind", env.TestKey,
				map[string]any{"end_user_id": other})
			env.ExpectError(r, 409, "device_already_bound", "id")
			expectWorks(t, env, "token after refused bind", dev.Token, true)
		})

		t.Run("bind to unknown end user", func(t *testing.T) {
			env := base.For(t)
			dev := str(env.RegisterDevice(), "id")
			r := env.Do("POST", "/v1/devices/"+dev+"/bind", env.TestKey,
				map[string]any{"end_user_id": "eu_000000000000000000000000"})
			env.ExpectError(r, 404, "not_found", "end_user_id")
			d := env.Do("GET", "/v1/devices/"+dev, env.TestKey, nil).Body
			if d["status"] != "unbound" || d["binding_generation"] != float64(0) {
				t.Errorf("device after refused bind: %v", d)
			}
		})

		t.Run("bind to end user of other mode", func(t *testing.T) {
			env := base.For(t)
			dev := str(env.RegisterDevice(), "id")
			live := str(env.CreateEndUserAs(env.LiveKey, nil), "id")
			r := env.Do("POST", "/v1/devices/"+dev+"/bind", env.TestKey, map[string]any{"end_user_id": live})
			env.ExpectError(r, 404, "not_found", "end_user_id")
		})

		t.Run("binding_generation increments per bind", func(t *testing.T) {
			env := base.For(t)
			dev := str(env.RegisterDevice(), "id")
			first := str(env.CreateEndUser(nil), "id")
			second := str(env.CreateEndUser(nil), "id")
			steps := []struct {
				path, endUser string
				want          float64
			}{
				{"bind", first, 1},
				{"bind", first, 1},
				{"unbind", "", 1},
				{"unbind", "", 1},
				{"bind", second, 2},
				{"unbind", "", 2},
				{"bind", first, 3},
			}
			var tokens []string
			for i, s := range steps {
				var body any
				if s.endUser != "" {
					body = map[string]any{"end_user_id": s.endUser}
				}
				r := env.Do("POST", "/v1/devices/"+dev+"/"+s.path, env.TestKey, body)
				env.ExpectStatus(r, 200)
				if got := r.Body["binding_generation"]; got != s.want {
					t.Errorf("step %d (%s): binding_generation = %v, want %v", i, s.path, got, s.want)
				}
				if tok := r.String("device_token"); tok != "" {
					tokens = append(tokens, tok)
				}
			}
			for i, tok := range tokens[:len(tokens)-1] {
				expectWorks(t, env, "token of bind "+strconv.Itoa(i), tok, false)
			}
			expectWorks(t, env, "token of the last bind", tokens[len(tokens)-1], true)
			st := env.Do("GET", "/v1/devices/"+dev+"/state", env.TestKey, nil).Body
			if st["binding_generation"] != float64(3) {
				t.Errorf("state binding_generation = %v, want 3", st["binding_generation"])
			}
		})

		t.Run("unbind revokes token", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			next := refresh(env, dev.Token)
			env.ExpectStatus(env.Do("POST", "/v1/devices/"+dev.DeviceID+"/unbind", env.TestKey, nil), 200)
			expectWorks(t, env, "token after unbind", dev.Token, false)
			expectWorks(t, env, "refreshed token after unbind", next, false)
			r := env.Do("POST", "/v1/devices/me/token/refresh", next, nil)
			env.ExpectError(r, 401, "unauthorized", "")
			// Binding again issues a new token; the old ones stay dead.
			fresh := env.BindDevice(dev.DeviceID, dev.EndUserID)
			expectWorks(t, env, "token of the new bind", fresh, true)
			expectWorks(t, env, "token of the old bind", dev.Token, false)
		})

		t.Run("heartbeat shows in device", func(t *testing.T) {
			env := base.For(t)
			dev := env.NewBoundDevice()
			r := env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, map[string]any{"battery_percent": 42})
			env.ExpectStatus(r, 200)
			d := env.Do("GET", "/v1/devices/"+dev.DeviceID, env.TestKey, nil).Body
			if d["battery_percent"] != float64(42) {
				t.Errorf("battery_percent = %v, want 42", d["battery_percent"])
			}
			st := env.Do("GET", "/v1/devices/"+dev.DeviceID+"/state", env.TestKey, nil).Body
			if st["online"] != true {
				t.Errorf("online = %v right after a heartbeat", st["online"])
			}
			env.Clock.Advance(121 * time.Second)
			st = env.Do("GET", "/v1/devices/"+dev.DeviceID+"/state", env.TestKey, nil).Body
			if st["online"] != false {
				t.Errorf("online = %v 121 s after the last heartbeat", st["online"])
			}
		})
	})
}

func TestDeviceTokenTTL(t *testing.T) {
	t.Parallel()
	ttl := apitest.WithConfig(func(c *api.Config) { c.DeviceTokenTTL = time.Hour })
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		dev := env.NewBoundDevice()
		env.Clock.Advance(59 * time.Minute)
		next := refresh(env, dev.Token)
		expectWorks(t, env, "refreshed token", next, true)
		env.Clock.Advance(2 * time.Minute)
		expectWorks(t, env, "first token after its lifetime", dev.Token, false)
		expectWorks(t, env, "refreshed token 2 minutes later", next, true)
		env.Clock.Advance(time.Hour)
		expectWorks(t, env, "refreshed token after its lifetime", next, false)
	}, ttl)
}
