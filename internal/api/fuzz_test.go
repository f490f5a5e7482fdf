package api_test

import (
	"bytes"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
)

// Without -fuzz these run the seed corpus as normal tests. Each body must
// give a 2xx or a 4xx with the API's error object, never a 5xx.

var commonSeeds = []string{
	``, `{}`, `null`, `[]`, `"x"`, `0`, `{"a":1}`, `{`, `{"name":`, "\xff", `{"metadata":{}}`,
	`{"metadata":null}`, `{"metadata":{"k":1.5e308}}`, `{"metadata":{"":1}}`, `{"name":"\u0000"}`,
	`{"name":"` + "\u00e9\u4e2d\U0001F600" + `"}`, `{} {}`, `{"name":"a","name":"b"}`,
}

// fuzzTarget is the request a fuzz body is sent with.
type fuzzTarget struct {
	method, path, token string
	// endUserID replaces EU_ID in the body.
	endUserID string
}

func fuzzBody(f *testing.F, seeds []string, setup func(env *apitest.Env) fuzzTarget,
	check func(t *testing.T, env *apitest.Env, r *apitest.Response)) {
	for _, s := range append(commonSeeds, seeds...) {
		f.Add([]byte(s))
	}
	env := apitest.New(f, apitest.SQLite())
	target := setup(env)
	f.Fuzz(func(t *testing.T, body []byte) {
		env := env.For(t)
		body = bytes.ReplaceAll(body, []byte("EU_ID"), []byte(target.endUserID))
		r := env.Do(target.method, target.path, target.token, body)
		switch {
		case r.Status >= 200 && r.Status < 300:
			if check != nil {
				check(t, env, r)
			}
		case r.Status >= 400 && r.Status < 500:
			if r.ErrorCode() == "" {
				t.Fatalf("status %d without error code: %s", r.Status, r.Raw)
			}
			env.ExpectError(r, r.Status, r.ErrorCode(), apitest.AnyParam)
		default:
			t.Fatalf("status %d for body %q: %s", r.Status, body, r.Raw)
		}
	})
}

func FuzzCreateEndUser(f *testing.F) {
	fuzzBody(f, []string{
		`{"external_id":"u1","email":"a@example.com","name":"A","metadata":{"k":"v"}}`,
		`{"email":"Ada <a@example.com>"}`, `{"email":"a@b"}`, `{"external_id":123}`,
		`{"metadata":{"k":{"nested":[1,2,{"x":null}]}}}`,
	}, func(env *apitest.Env) fuzzTarget {
		return fuzzTarget{method: "POST", path: "/v1/end-users", token: env.TestKey}
	}, func(t *testing.T, env *apitest.Env, r *apitest.Response) {
		checkEndUser(t, env, r.Body)
	})
}

func FuzzUpdateEndUser(f *testing.F) {
	fuzzBody(f, []string{
		`{"name":null,"email":null,"external_id":null}`, `{"external_id":"fuzz-ext"}`,
		`{"email":"x@example.org"}`, `{"metadata":{"a":"b"}}`,
	}, func(env *apitest.Env) fuzzTarget {
		eu := str(env.CreateEndUser(nil), "id")
		return fuzzTarget{method: "PATCH", path: "/v1/end-users/" + eu, token: env.TestKey}
	}, func(t *testing.T, env *apitest.Env, r *apitest.Response) {
		checkEndUser(t, env, r.Body)
	})
}

func FuzzRegisterDevice(f *testing.F) {
	fuzzBody(f, []string{
		`{"serial_number":"SN-1"}`, `{"serial_number":"SN-2","model":"bota_note","firmware_version":"1.0"}`,
		`{"serial_number":"SN-3","device_type":"Bota Pin v1"}`, `{"serial_number":"SN-4","settings":{"a":{}}}`,
		`{"serial_number":""}`, `{"serial_number":null}`, `{"serial_number":["x"]}`,
	}, func(env *apitest.Env) fuzzTarget {
		return fuzzTarget{method: "POST", path: "/v1/devices", token: env.TestKey}
	}, func(t *testing.T, env *apitest.Env, r *apitest.Response) {
		checkDevice(t, env, r.Body)
	})
}

func FuzzUpdateDevice(f *testing.F) {
	fuzzBody(f, []string{
		`{"name":"Desk"}`, `{"name":null,"firmware_version":null}`, `{"settings":{"audio":{"codec":"opus"}}}`,
		`{"settings":null,"metadata":null}`, `{"firmware_version":""}`,
	}, func(env *apitest.Env) fuzzTarget {
		dev := str(env.RegisterDevice(), "id")
		return fuzzTarget{method: "PATCH", path: "/v1/devices/" + dev, token: env.TestKey}
	}, func(t *testing.T, env *apitest.Env, r *apitest.Response) {
		checkDevice(t, env, r.Body)
	})
}

func FuzzBindDevice(f *testing.F) {
	// EU_ID stands for an end user of the project, so valid binds occur.
	fuzzBody(f, []string{
		`{"end_user_id":"EU_ID"}`, `{"end_user_id":"EU_ID","pk_d":"` + string(bytes.Repeat([]byte("0f"), 64)) + `"}`,
		`{"end_user_id":"eu_x"}`, `{"end_user_id":""}`, `{"end_user_id":"EU_ID","pk_d":null}`,
	}, func(env *apitest.Env) fuzzTarget {
		dev := str(env.RegisterDevice(), "id")
		eu := str(env.CreateEndUser(nil), "id")
		return fuzzTarget{method: "POST", path: "/v1/devices/" + dev + "/bind", token: env.TestKey, endUserID: eu}
	}, nil)
}

func FuzzHeartbeat(f *testing.F) {
	fuzzBody(f, []string{
		`{"battery_percent":50,"storage_used_mb":1,"storage_total_mb":2,"signal_strength_dbm":-80}`,
		`{"device_state":"idle","pending_recordings":0,"flags":255,"connection_type":["wifi","4g","ble"]}`,
		`{"connection_type":null}`, `{"connection_type":[]}`, `{"battery_percent":-1}`,
		`{"command_results":[{"id":"cmd_1","status":"executed"}]}`, `{"firmware_version":"v` + "9" + `"}`,
		`{"name":""}`, `{"battery_percent":1e2}`,
	}, func(env *apitest.Env) fuzzTarget {
		return fuzzTarget{method: "POST", path: "/v1/devices/me/heartbeat", token: env.NewBoundDevice().Token}
	}, nil)
}
