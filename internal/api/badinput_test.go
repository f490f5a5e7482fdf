package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
)

// maxBody is the server's request body limit (1 MiB).
const maxBody = 1 << 20

func TestBadInput(t *testing.T) {
	t.Parallel()
	type input struct {
		name, method, path, body string
		contentType              string
		status                   int
		code, param              string
	}
	writes := []struct{ method, path string }{
		{"POST", "/v1/end-users"},
		{"PATCH", "/v1/end-users/{eu}"},
		{"POST", "/v1/devices"},
		{"PATCH", "/v1/devices/{dev}"},
		{"POST", "/v1/devices/{dev}/bind"},
		{"POST", "/v1/devices/{dev}/heartbeat"},
	}
	var cases []input
	for _, w := range writes {
		for _, b := range []struct{ name, body string }{
			{"truncated JSON", `{"name":`},
			{"array body", `[]`},
			{"string body", `"hello"`},
			{"trailing garbage", `{"name":"a"} x`},
			{"invalid UTF-8", "{\"name\":\"\xff\xfe\"}"},
			{"deep nesting", `{"metadata":{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`},
		} {
			cases = append(cases, input{name: w.method + " " + w.path + " " + b.name, method: w.method,
				path: w.path, body: b.body, status: 400, code: "invalid_request"})
		}
		cases = append(cases,
			input{name: w.method + " " + w.path + " text/plain", method: w.method, path: w.path,
				body: `{}`, contentType: "text/plain", status: 415, code: "unsupported_media_type"},
			input{name: w.method + " " + w.path + " oversize", method: w.method, path: w.path,
				body: `{"pad":"` + strings.Repeat("x", maxBody) + `"}`, status: 413, code: "payload_too_large"})
	}
	typed := []struct{ method, path, field, value string }{
		{"POST", "/v1/end-users", "external_id", "5"},
		{"POST", "/v1/end-users", "email", "true"},
		{"POST", "/v1/end-users", "name", "{}"},
		{"POST", "/v1/end-users", "metadata", "[]"},
		{"PATCH", "/v1/end-users/{eu}", "external_id", "[]"},
		{"PATCH", "/v1/end-users/{eu}", "metadata", "1"},
		{"POST", "/v1/devices", "serial_number", "12345"},
		{"POST", "/v1/devices", "model", "1"},
		{"POST", "/v1/devices", "firmware_version", "1.0"},
		{"POST", "/v1/devices", "metadata", `"x"`},
		{"POST", "/v1/devices", "settings", `"x"`},
		{"PATCH", "/v1/devices/{dev}", "name", "false"},
		{"PATCH", "/v1/devices/{dev}", "settings", "[1]"},
		{"POST", "/v1/devices/{dev}/bind", "end_user_id", "{}"},
		{"POST", "/v1/devices/{dev}/bind", "pk_d", "7"},
		{"POST", "/v1/devices/{dev}/heartbeat", "battery_percent", `"50"`},
		{"POST", "/v1/devices/{dev}/heartbeat", "battery_percent", "50.5"},
		{"POST", "/v1/devices/{dev}/heartbeat", "battery_percent", "1e400"},
		{"POST", "/v1/devices/{dev}/heartbeat", "storage_used_mb", "99999999999999999999"},
		{"POST", "/v1/devices/{dev}/heartbeat", "storage_total_mb", "-1"},
		{"POST", "/v1/devices/{dev}/heartbeat", "signal_strength_dbm", "true"},
		{"POST", "/v1/devices/{dev}/heartbeat", "firmware_version", "1"},
		{"POST", "/v1/devices/{dev}/heartbeat", "firmware_version", `""`},
		{"POST", "/v1/devices/{dev}/heartbeat", "device_state", "[]"},
		{"POST", "/v1/devices/{dev}/heartbeat", "pending_recordings", "-1"},
		{"POST", "/v1/devices/{dev}/heartbeat", "connection_type", `"wifi"`},
		{"POST", "/v1/devices/{dev}/heartbeat", "command_results", `{}`},
	}
	for _, f := range typed {
		body := `{"` + f.field + `":` + f.value + `}`
		if f.path == "/v1/devices" && f.field != "serial_number" {
			body = `{"serial_number":"SN-typed",` + body[1:]
		}
		cases = append(cases, input{name: f.method + " " + f.path + " " + f.field + "=" + f.value,
			method: f.method, path: f.path, body: body, status: 400, code: "invalid_request", param: f.field})
	}
	for _, p := range []string{
		"/v1/devices/dev_%21%21", "/v1/devices/dev_a-b", "/v1/devices/dev_", "/v1/devices/dev",
		"/v1/devices/%00", "/v1/devices/dev_" + strings.Repeat("a", 65), "/v1/devices/eu_abc",
		"/v1/devices/dev_%C3%A9", "/v1/devices/dev_abc%20",
		"/v1/end-users/eu_%21", "/v1/end-users/eu_" + strings.Repeat("a", 65), "/v1/end-users/dev_abc",
		"/v1/end-users/%2e%2e",
	} {
		cases = append(cases, input{name: "GET " + p, method: "GET", path: p, status: 404, code: "not_found",
			param: "id"})
	}
	for _, p := range []string{"/v1/devices/dev_%21%21/heartbeat", "/v1/devices/dev_" + strings.Repeat("a", 65) + "/bind"} {
		cases = append(cases, input{name: "POST " + p, method: "POST", path: p, body: `{"end_user_id":"eu_x"}`,
			status: 404, code: "not_found", param: "id"})
	}

	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		env := apitest.New(t, b)
		fx := newFixture(env)
		before := snapshot(env, fx)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				env := env.For(t)
				req, err := http.NewRequest(tc.method, env.URL+fx.expand(tc.path), strings.NewReader(fx.expand(tc.body)))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+env.TestKey)
				ct := tc.contentType
				if ct == "" {
					ct = "application/json"
				}
				req.Header.Set("Content-Type", ct)
				r := env.Send(req)
				param := tc.param
				if tc.param == "" && tc.code == "invalid_request" {
					param = apitest.AnyParam
				}
				env.ExpectError(r, tc.status, tc.code, param)
			})
		}
		if after := snapshot(env, fx); after != before {
			t.Errorf("refused requests changed state:\nbefore %s\nafter  %s", before, after)
		}
		d := env.Do("GET", "/v1/devices/"+fx.DeviceID, env.TestKey, nil).Body
		if d["battery_percent"] != nil || d["last_heartbeat_at"] != nil || d["name"] != nil {
			t.Errorf("refused heartbeats wrote to the device: %v", d)
		}
	})
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		// Unknown fields are ignored, so a body of exactly the limit is
		// accepted.
		pad := maxBody - len(`{"pad":""}`)
		r := env.Do("POST", "/v1/end-users", env.TestKey, `{"pad":"`+strings.Repeat("x", pad)+`"}`)
		env.ExpectStatus(r, 201)

		over := `{"pad":"` + strings.Repeat("x", pad+1) + `"}`
		r = env.Do("POST", "/v1/end-users", env.TestKey, over)
		env.ExpectError(r, 413, "payload_too_large", "")
		r = env.Do("POST", "/v1/end-users", env.TestKey, over, "Idempotency-Key", "big-1")
		env.ExpectError(r, 413, "payload_too_large", "")

		// Without a Content-Type, a JSON body is read as JSON; curl's
		// default form type is accepted for a JSON object.
		req, _ := http.NewRequest("POST", env.URL+"/v1/end-users", strings.NewReader(`{"name":"curl"}`))
		req.Header.Set("Authorization", "Bearer "+env.TestKey)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		env.ExpectStatus(env.Send(req), 201)
		req, _ = http.NewRequest("POST", env.URL+"/v1/end-users", strings.NewReader(`name=form`))
		req.Header.Set("Authorization", "Bearer "+env.TestKey)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		env.ExpectError(env.Send(req), 415, "unsupported_media_type", "")

		if n := len(env.Do("GET", "/v1/end-users", env.TestKey, nil).Data()); n != 2 {
			t.Errorf("%d end users, want 2", n)
		}
	})
}
