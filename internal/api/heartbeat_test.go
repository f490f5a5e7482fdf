package api_test

import (
	"encoding/json"
	"reflect"
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
