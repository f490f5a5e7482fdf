package api_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
)

// deviceState returns the device's recording_state as the API renders it.
func deviceState(env *apitest.Env, deviceID string) map[string]any {
	env.T().Helper()
	r := env.Do("GET", "/v1/devices/"+deviceID, env.TestKey, nil)
	env.ExpectStatus(r, 200)
	st, ok := r.Body["recording_state"].(map[string]any)
	if !ok {
		env.T().Fatalf("recording_state = %v, want an object", r.Body["recording_state"])
	}
	return st
}

func TestHeartbeatMergesRecordingState(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, base *apitest.Env) {
		env := base.For(t)
		dev := env.NewBoundDevice()
		d := env.Do("GET", "/v1/devices/"+dev.DeviceID, env.TestKey, nil)
		if d.Body["recording_state"] != nil {
			t.Fatalf("recording_state before any report = %v, want null", d.Body["recording_state"])
		}

		steps := []struct {
			body string
			want map[string]any
		}{
			{`{"pending_recordings":3}`, map[string]any{"device_state": nil, "pending_recordings": 3.0,
				"flags": nil, "connection_type": []any{}}},
			{`{"device_state":"syncing","connection_type":["ble","wifi"]}`, map[string]any{
				"device_state": "syncing", "pending_recordings": 3.0, "flags": nil,
				"connection_type": []any{"ble", "wifi"}}},
			// An array replaces the stored one; other fields stay.
			{`{"flags":4,"connection_type":["4g"]}`, map[string]any{"device_state": "syncing",
				"pending_recordings": 3.0, "flags": 4.0, "connection_type": []any{"4g"}}},
			// A heartbeat without recording_state fields leaves them alone.
			{`{"battery_percent":50}`, map[string]any{"device_state": "syncing",
				"pending_recordings": 3.0, "flags": 4.0, "connection_type": []any{"4g"}}},
		}
		for _, step := range steps {
			env.ExpectStatus(env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, step.body), 200)
			if got := deviceState(env, dev.DeviceID); !reflect.DeepEqual(got, step.want) {
				t.Errorf("after %s: recording_state = %v, want %v", step.body, got, step.want)
			}
		}

		// The state endpoint renders the same object, keys in a fixed order.
		r := env.Do("GET", "/v1/devices/"+dev.DeviceID+"/state", env.TestKey, nil)
		env.ExpectStatus(r, 200)
		var raw struct {
			RecordingState json.RawMessage `json:"recording_state"`
		}
		if err := json.Unmarshal(r.Raw, &raw); err != nil {
			t.Fatal(err)
		}
		const want = `{"device_state":"syncing","pending_recordings":3,"flags":4,"connection_type":["4g"]}`
		if string(raw.RecordingState) != want {
			t.Errorf("state recording_state = %s, want %s", raw.RecordingState, want)
		}
	})
}

// Reports of different fields sent at the same time all land: the merge
// happens in the database, not in a read-modify-write of the handler.
func TestHeartbeatConcurrentFieldsAllLand(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, base *apitest.Env) {
		env := base.For(t)
		dev := env.NewBoundDevice()
		bodies := []string{`{"device_state":"recording"}`, `{"pending_recordings":7}`, `{"flags":2}`,
			`{"connection_type":["wifi"]}`}
		var wg sync.WaitGroup
		statuses := make([]int, len(bodies))
		for i, body := range bodies {
			wg.Go(func() { statuses[i] = env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, body).Status })
		}
		wg.Wait()
		for i, st := range statuses {
			if st != 200 {
				t.Fatalf("heartbeat %s: status %d", bodies[i], st)
			}
		}
		want := map[string]any{"device_state": "recording", "pending_recordings": 7.0, "flags": 2.0,
			"connection_type": []any{"wifi"}}
		if got := deviceState(env, dev.DeviceID); !reflect.DeepEqual(got, want) {
			t.Errorf("recording_state = %v, want %v", got, want)
		}
	})
}

// heartbeatChecks returns bota_heartbeats_total by check from /metrics.
func heartbeatChecks(env *apitest.Env) map[string]int {
	env.T().Helper()
	r := env.Do("GET", "/metrics", "", nil)
	env.ExpectStatus(r, 200)
	counts := map[string]int{}
	for _, line := range strings.Split(string(r.Raw), "\n") {
		rest, ok := strings.CutPrefix(line, `bota_heartbeats_total{check="`)
		if !ok {
			continue
		}
		check, value, _ := strings.Cut(rest, `"} `)
		n, err := strconv.Atoi(value)
		if err != nil {
			env.T().Fatalf("metrics line %q: %v", line, err)
		}
		counts[check] = n
	}
	return counts
}

// A device token's first heartbeat reads the token, and later ones are
// checked by the heartbeat's own statement. A token that stops being valid
// there gets the same responses as one read first.
func TestHeartbeatKnownTokenPath(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		dev := env.NewBoundDevice()
		for i := range 3 {
			body := fmt.Sprintf(`{"battery_percent":%d,"device_state":"recording"}`, 50+i)
			env.ExpectStatus(env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, body), 200)
		}
		if got, want := heartbeatChecks(env), map[string]int{"lookup": 1, "update": 2}; !reflect.DeepEqual(got, want) {
			t.Fatalf("heartbeat checks = %v, want %v", got, want)
		}
		d := env.Do("GET", "/v1/devices/"+dev.DeviceID, env.TestKey, nil)
		if got := d.Body["battery_percent"]; got != 52.0 {
			t.Errorf("battery_percent = %v, want 52 from the last heartbeat", got)
		}

		// The id in the path must still be the token's own device.
		other := env.NewBoundDevice()
		r := env.Do("POST", "/v1/devices/"+other.DeviceID+"/heartbeat", dev.Token, `{}`)
		env.ExpectError(r, 404, "not_found", "id")
		env.ExpectStatus(env.Do("POST", "/v1/devices/"+dev.DeviceID+"/heartbeat", dev.Token, `{}`), 200)

		// A bad body on a good token is a 400 on this path too.
		r = env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{"battery_percent":101}`)
		env.ExpectError(r, 400, "invalid_request", "battery_percent")

		// Once the refreshed token is used, the old one is revoked: the
		// credential's 401 comes first, even before a bad body's 400.
		next := refresh(env, dev.Token)
		env.ExpectStatus(env.Do("POST", "/v1/devices/me/heartbeat", next, `{}`), 200)
		env.ExpectError(env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{}`), 401, "unauthorized", "")
		r = env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{"battery_percent":101}`)
		env.ExpectError(r, 401, "unauthorized", "")

		// Deleting the device revokes its token on this path as well.
		env.ExpectStatus(env.Do("POST", "/v1/devices/me/heartbeat", next, `{}`), 200)
		env.ExpectStatus(env.Do("DELETE", "/v1/devices/"+dev.DeviceID, env.TestKey, nil), 204)
		env.ExpectError(env.Do("POST", "/v1/devices/me/heartbeat", next, `{}`), 401, "unauthorized", "")
	})
}

// The device rate limit applies before the heartbeat's statement, and a
// revoked token gets its 401 rather than the device's 429.
func TestHeartbeatKnownTokenRateLimit(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		// A stopped clock refills no bucket between the requests.
		env.Clock.Freeze()
		dev := env.NewBoundDevice()
		for range 2 {
			env.ExpectStatus(env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{"battery_percent":10}`), 200)
		}
		r := env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{"battery_percent":90}`)
		env.ExpectError(r, 429, "rate_limit_exceeded", "")
		d := env.Do("GET", "/v1/devices/"+dev.DeviceID, env.TestKey, nil)
		if got := d.Body["battery_percent"]; got != 10.0 {
			t.Errorf("battery_percent = %v, want 10: a refused heartbeat must not be stored", got)
		}
		if got := heartbeatChecks(env); got["update"] != 1 {
			t.Errorf("heartbeat checks = %v, want one in the update", got)
		}
		// The limit comes before the body's checks, as on the full path.
		r = env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{"battery_percent":101}`)
		env.ExpectError(r, 429, "rate_limit_exceeded", "")

		env.ExpectStatus(env.Do("DELETE", "/v1/devices/"+dev.DeviceID, env.TestKey, nil), 204)
		r = env.Do("POST", "/v1/devices/me/heartbeat", dev.Token, `{}`)
		env.ExpectError(r, 401, "unauthorized", "")
		if got := r.Header.Get("X-RateLimit-Limit"); got != "" {
			t.Errorf("401 carries X-RateLimit-Limit %q, want none", got)
		}
	}, apitest.WithRateLimit(1000, 2))
}
