package api_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
)

// fixture is what every endpoint case starts from: an end user with an
// external id and a bound device, a second end user, and an unbound device.
type fixture struct {
	EndUserID    string
	ExternalID   string
	OtherUserID  string
	OtherExtID   string
	DeviceID     string
	Serial       string
	DeviceToken  string
	UnboundID    string
	UnboundToken string
}

func newFixture(env *apitest.Env) fixture {
	env.T().Helper()
	fx := fixture{ExternalID: env.Unique("ext"), OtherExtID: env.Unique("ext"), Serial: env.Unique("SN")}
	fx.EndUserID = str(env.CreateEndUser(map[string]any{"external_id": fx.ExternalID}), "id")
	fx.OtherUserID = str(env.CreateEndUser(map[string]any{"external_id": fx.OtherExtID}), "id")
	fx.DeviceID = str(env.RegisterDeviceAs(env.TestKey, map[string]any{"serial_number": fx.Serial}), "id")
	fx.DeviceToken = env.BindDevice(fx.DeviceID, fx.EndUserID)
	fx.UnboundID = str(env.RegisterDevice(), "id")
	return fx
}

// expand replaces {eu}, {ext}, {eu2}, {ext2}, {dev}, {serial} and {unbound}
// with the fixture's values.
func (fx fixture) expand(s string) string {
	return strings.NewReplacer("{eu}", fx.EndUserID, "{ext}", fx.ExternalID,
		"{eu2}", fx.OtherUserID, "{ext2}", fx.OtherExtID, "{dev}", fx.DeviceID,
		"{serial}", fx.Serial, "{unbound}", fx.UnboundID).Replace(s)
}

type endpointCase struct {
	name   string
	method string
	path   string
	// body is raw JSON with fixture placeholders; "" sends none.
	body string
	// device sends the bound device's token instead of the test key.
	device bool
	status int
	// code and param are the expected error; code "" means success.
	code  string
	param string
	// check runs after the request on success and on error.
	check func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response)
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 256)
	cases := []endpointCase{
		// End users.
		{name: "create end user", method: "POST", path: "/v1/end-users",
			body:   `{"external_id":"new-ext","email":"ada@example.com","name":"Ada","metadata":{"plan":"pro"}}`,
			status: 201, check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkEndUser(t, env, r.Body)
				want := map[string]any{"external_id": "new-ext", "email": "ada@example.com", "name": "Ada"}
				for k, v := range want {
					if r.Body[k] != v {
						t.Errorf("%s = %v, want %v", k, r.Body[k], v)
					}
				}
				if m, _ := r.Body["metadata"].(map[string]any); m["plan"] != "pro" {
					t.Errorf("metadata = %v", r.Body["metadata"])
				}
			}},
		{name: "create end user empty body", method: "POST", path: "/v1/end-users", body: `{}`,
			status: 201, check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkEndUser(t, env, r.Body)
				for _, k := range []string{"external_id", "email", "name"} {
					if r.Body[k] != nil {
						t.Errorf("%s = %v, want null", k, r.Body[k])
					}
				}
			}},
		{name: "create end user taken external_id", method: "POST", path: "/v1/end-users",
			body: `{"external_id":"{ext}"}`, status: 409, code: "resource_already_exists", param: "external_id"},
		{name: "create end user bad email", method: "POST", path: "/v1/end-users",
			body: `{"email":"not an email"}`, status: 400, code: "invalid_request", param: "email"},
		{name: "create end user empty external_id", method: "POST", path: "/v1/end-users",
			body: `{"external_id":""}`, status: 400, code: "invalid_request", param: "external_id"},
		{name: "create end user long name", method: "POST", path: "/v1/end-users",
			body: `{"name":"` + long + `"}`, status: 400, code: "invalid_request", param: "name"},
		{name: "create end user NUL in name", method: "POST", path: "/v1/end-users",
			body: `{"name":"a\u0000b"}`, status: 400, code: "invalid_request", param: "name"},
		{name: "create end user metadata not object", method: "POST", path: "/v1/end-users",
			body: `{"metadata":"x"}`, status: 400, code: "invalid_request", param: "metadata"},
		{name: "create end user metadata 51 keys", method: "POST", path: "/v1/end-users",
			body: `{"metadata":` + manyKeys(51) + `}`, status: 400, code: "invalid_request", param: "metadata"},
		{name: "create end user metadata 50 keys", method: "POST", path: "/v1/end-users",
			body: `{"metadata":` + manyKeys(50) + `}`, status: 201},
		{name: "create end user metadata long key", method: "POST", path: "/v1/end-users",
			body:   `{"metadata":{"` + strings.Repeat("k", 41) + `":"v"}}`,
			status: 400, code: "invalid_request", param: "metadata"},
		{name: "create end user metadata long value", method: "POST", path: "/v1/end-users",
			body:   `{"metadata":{"k":"` + strings.Repeat("v", 501) + `"}}`,
			status: 400, code: "invalid_request", param: "metadata.k"},
		{name: "list end users", method: "GET", path: "/v1/end-users", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkList(t, r)
				if n := len(r.Data()); n != 2 {
					t.Errorf("len(data) = %d, want 2", n)
				}
				for _, u := range r.Data() {
					checkEndUser(t, env, u)
				}
			}},
		{name: "list end users by external_id", method: "GET", path: "/v1/end-users?external_id={ext}",
			status: 200, check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				data := r.Data()
				if len(data) != 1 || data[0]["id"] != fx.EndUserID {
					t.Errorf("data = %v, want only %s", data, fx.EndUserID)
				}
				if r.Body["has_more"] != false || r.Body["next_cursor"] != nil {
					t.Errorf("has_more = %v, next_cursor = %v", r.Body["has_more"], r.Body["next_cursor"])
				}
			}},
		{name: "get end user", method: "GET", path: "/v1/end-users/{eu}", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkEndUser(t, env, r.Body)
				if r.Body["id"] != fx.EndUserID || r.Body["external_id"] != fx.ExternalID {
					t.Errorf("got %v", r.Body)
				}
			}},
		{name: "get end user unknown", method: "GET", path: "/v1/end-users/eu_unknown0000",
			status: 404, code: "not_found", param: "id"},
		{name: "get end user by device id", method: "GET", path: "/v1/end-users/{dev}",
			status: 404, code: "not_found", param: "id"},
		{name: "update end user", method: "PATCH", path: "/v1/end-users/{eu}",
			body: `{"name":"New","email":"n@example.com"}`, status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkEndUser(t, env, r.Body)
				got := env.Do("GET", "/v1/end-users/"+fx.EndUserID, env.TestKey, nil).Body
				if got["name"] != "New" || got["email"] != "n@example.com" || got["external_id"] != fx.ExternalID {
					t.Errorf("after PATCH: %v", got)
				}
			}},
		{name: "update end user clears name", method: "PATCH", path: "/v1/end-users/{eu}",
			body: `{"name":null}`, status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				if r.Body["name"] != nil || r.Body["external_id"] != fx.ExternalID {
					t.Errorf("after PATCH: %v", r.Body)
				}
			}},
		{name: "update end user null metadata", method: "PATCH", path: "/v1/end-users/{eu}",
			body: `{"metadata":null}`, status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkEndUser(t, env, r.Body)
			}},
		{name: "update end user taken external_id", method: "PATCH", path: "/v1/end-users/{eu}",
			body: `{"external_id":"{ext2}"}`, status: 409, code: "resource_already_exists", param: "external_id"},
		{name: "update end user bad email", method: "PATCH", path: "/v1/end-users/{eu}",
			body: `{"email":"@"}`, status: 400, code: "invalid_request", param: "email"},
		{name: "update end user unknown", method: "PATCH", path: "/v1/end-users/eu_unknown0000",
			body: `{"name":"x"}`, status: 404, code: "not_found", param: "id"},
		{name: "delete end user", method: "DELETE", path: "/v1/end-users/{eu}", status: 204,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				if len(r.Raw) != 0 {
					t.Errorf("204 body = %q", r.Raw)
				}
				env.ExpectError(env.Do("GET", "/v1/end-users/"+fx.EndUserID, env.TestKey, nil),
					404, "not_found", "id")
				d := env.Do("GET", "/v1/devices/"+fx.DeviceID, env.TestKey, nil).Body
				if d["status"] != "unbound" || d["end_user_id"] != nil {
					t.Errorf("device of deleted end user: status %v, end_user_id %v", d["status"], d["end_user_id"])
				}
				env.ExpectError(env.Do("POST", "/v1/devices/me/heartbeat", fx.DeviceToken, `{}`),
					401, "unauthorized", "")
				again := env.Do("DELETE", "/v1/end-users/"+fx.EndUserID, env.TestKey, nil)
				env.ExpectError(again, 404, "not_found", "id")
			}},
		{name: "delete end user unknown", method: "DELETE", path: "/v1/end-users/eu_unknown0000",
			status: 404, code: "not_found", param: "id"},

		// Devices.
		{name: "register device", method: "POST", path: "/v1/devices",
			body: `{"serial_number":"SN-new","model":"bota_note","firmware_version":"1.2.0",` +
				`"name":"Desk","metadata":{"erp":"42"}}`,
			status: 201, check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkDevice(t, env, r.Body)
				want := map[string]any{"serial_number": "SN-new", "model": "bota_note",
					"device_type": "bota_note", "firmware_version": "1.2.0", "name": "Desk",
					"status": "unbound", "binding_generation": float64(0)}
				for k, v := range want {
					if r.Body[k] != v {
						t.Errorf("%s = %v, want %v", k, r.Body[k], v)
					}
				}
				for _, k := range []string{"battery_percent", "storage_used_mb", "storage_total_mb",
					"signal_strength_dbm", "last_heartbeat_at", "recording_state", "end_user_id", "bound_at"} {
					if r.Body[k] != nil {
						t.Errorf("%s = %v, want null", k, r.Body[k])
					}
				}
			}},
		{name: "register device defaults", method: "POST", path: "/v1/devices",
			body: `{"serial_number":"SN-plain"}`, status: 201,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkDevice(t, env, r.Body)
				if r.Body["model"] != "bota_pin" {
					t.Errorf("model = %v, want bota_pin", r.Body["model"])
				}
			}},
		{name: "register device device_type alias", method: "POST", path: "/v1/devices",
			body: `{"serial_number":"SN-old","device_type":"bota_pin_v1"}`, status: 201,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				if r.Body["device_type"] != "bota_pin_v1" {
					t.Errorf("device_type = %v", r.Body["device_type"])
				}
			}},
		{name: "register device existing serial", method: "POST", path: "/v1/devices",
			body: `{"serial_number":"{serial}","name":"ignored"}`, status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkDevice(t, env, r.Body)
				if r.Body["id"] != fx.DeviceID || r.Body["status"] != "bound" {
					t.Errorf("got id %v status %v, want the existing bound %s", r.Body["id"], r.Body["status"], fx.DeviceID)
				}
			}},
		{name: "register device no serial", method: "POST", path: "/v1/devices", body: `{}`,
			status: 400, code: "invalid_request", param: "serial_number"},
		{name: "register device null serial", method: "POST", path: "/v1/devices",
			body: `{"serial_number":null}`, status: 400, code: "invalid_request", param: "serial_number"},
		{name: "register device empty serial", method: "POST", path: "/v1/devices",
			body: `{"serial_number":""}`, status: 400, code: "invalid_request", param: "serial_number"},
		{name: "register device bad model", method: "POST", path: "/v1/devices",
			body: `{"serial_number":"SN-x","model":"Bota Pin"}`, status: 400, code: "invalid_request", param: "model"},
		{name: "register device long firmware", method: "POST", path: "/v1/devices",
			body:   `{"serial_number":"SN-x","firmware_version":"` + strings.Repeat("1", 65) + `"}`,
			status: 400, code: "invalid_request", param: "firmware_version"},
		{name: "list devices", method: "GET", path: "/v1/devices", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkList(t, r)
				if n := len(r.Data()); n != 2 {
					t.Errorf("len(data) = %d, want 2", n)
				}
				for _, d := range r.Data() {
					checkDevice(t, env, d)
				}
			}},
		{name: "list devices bound", method: "GET", path: "/v1/devices?status=bound", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				if d := r.Data(); len(d) != 1 || d[0]["id"] != fx.DeviceID {
					t.Errorf("data = %v, want only %s", d, fx.DeviceID)
				}
			}},
		{name: "list devices by end user", method: "GET", path: "/v1/devices?end_user_id={eu}", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				if d := r.Data(); len(d) != 1 || d[0]["id"] != fx.DeviceID {
					t.Errorf("data = %v, want only %s", d, fx.DeviceID)
				}
			}},
		{name: "list devices by serial", method: "GET", path: "/v1/devices?serial_number={serial}", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				if d := r.Data(); len(d) != 1 || d[0]["id"] != fx.DeviceID {
					t.Errorf("data = %v, want only %s", d, fx.DeviceID)
				}
			}},
		{name: "list devices bad status", method: "GET", path: "/v1/devices?status=lost",
			status: 400, code: "invalid_request", param: "status"},
		{name: "device stats", method: "GET", path: "/v1/devices/stats", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				want := map[string]float64{"online_count": 0, "low_battery_count": 0,
					"storage_full_count": 0, "total_count": 2}
				for k, v := range want {
					if r.Body[k] != v {
						t.Errorf("%s = %v, want %v", k, r.Body[k], v)
					}
				}
			}},
		{name: "get device", method: "GET", path: "/v1/devices/{dev}", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkDevice(t, env, r.Body)
				if r.Body["id"] != fx.DeviceID || r.Body["end_user_id"] != fx.EndUserID ||
					r.Body["binding_generation"] != float64(1) {
					t.Errorf("got %v", r.Body)
				}
				if _, ok := r.Body["device_token"]; ok {
					t.Errorf("GET device shows device_token")
				}
			}},
		{name: "get device unknown", method: "GET", path: "/v1/devices/dev_unknown0000",
			status: 404, code: "not_found", param: "id"},
		{name: "get device me with key", method: "GET", path: "/v1/devices/me",
			status: 404, code: "not_found", param: "id"},
		{name: "update device", method: "PATCH", path: "/v1/devices/{dev}",
			body:   `{"name":"Kitchen","firmware_version":"2.0.0","metadata":{"a":"b"},"settings":{"audio":{"codec":"opus"}}}`,
			status: 200, check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkDevice(t, env, r.Body)
				got := env.Do("GET", "/v1/devices/"+fx.DeviceID, env.TestKey, nil).Body
				if got["name"] != "Kitchen" || got["firmware_version"] != "2.0.0" || got["status"] != "bound" {
					t.Errorf("after PATCH: %v", got)
				}
				if m, _ := got["metadata"].(map[string]any); m["a"] != "b" {
					t.Errorf("metadata = %v", got["metadata"])
				}
			}},
		{name: "update device null metadata", method: "PATCH", path: "/v1/devices/{dev}",
			body: `{"metadata":null,"settings":null}`, status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkDevice(t, env, r.Body)
			}},
		{name: "update device long name", method: "PATCH", path: "/v1/devices/{dev}",
			body: `{"name":"` + strings.Repeat("n", 129) + `"}`, status: 400, code: "invalid_request", param: "name"},
		{name: "update device unknown", method: "PATCH", path: "/v1/devices/dev_unknown0000",
			body: `{"name":"x"}`, status: 404, code: "not_found", param: "id"},
		{name: "delete device", method: "DELETE", path: "/v1/devices/{dev}", status: 204,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				env.ExpectError(env.Do("GET", "/v1/devices/"+fx.DeviceID, env.TestKey, nil), 404, "not_found", "id")
				env.ExpectError(env.Do("POST", "/v1/devices/me/heartbeat", fx.DeviceToken, `{}`),
					401, "unauthorized", "")
				again := env.Do("DELETE", "/v1/devices/"+fx.DeviceID, env.TestKey, nil)
				env.ExpectError(again, 404, "not_found", "id")
			}},
		{name: "delete device unknown", method: "DELETE", path: "/v1/devices/dev_unknown0000",
			status: 404, code: "not_found", param: "id"},
		{name: "bind device", method: "POST", path: "/v1/devices/{unbound}/bind",
			body: `{"end_user_id":"{eu2}"}`, status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkDevice(t, env, r.Body)
				requireKeys(t, "bind", r.Body, []string{"device_token", "cert", "ble_pubkey"})
				if !strings.HasPrefix(r.String("device_token"), "dtok_") {
					t.Errorf("device_token = %v", r.Body["device_token"])
				}
				if r.Body["status"] != "bound" || r.Body["end_user_id"] != fx.OtherUserID ||
					r.Body["binding_generation"] != float64(1) {
					t.Errorf("bind: %v", r.Body)
				}
				if r.Body["cert"] != nil || r.Body["ble_pubkey"] != nil {
					t.Errorf("cert = %v, ble_pubkey = %v; want null", r.Body["cert"], r.Body["ble_pubkey"])
				}
			}},
		{name: "bind device with pk_d", method: "POST", path: "/v1/devices/{unbound}/bind",
			body: `{"end_user_id":"{eu}","pk_d":"` + strings.Repeat("ab", 64) + `"}`, status: 200},
		{name: "bind device bad pk_d", method: "POST", path: "/v1/devices/{unbound}/bind",
			body: `{"end_user_id":"{eu}","pk_d":"xyz"}`, status: 400, code: "invalid_request", param: "pk_d"},
		{name: "bind device bound elsewhere", method: "POST", path: "/v1/devices/{dev}/bind",
			body: `{"end_user_id":"{eu2}"}`, status: 409, code: "device_already_bound", param: "id",
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				d := env.Do("GET", "/v1/devices/"+fx.DeviceID, env.TestKey, nil).Body
				if d["end_user_id"] != fx.EndUserID {
					t.Errorf("end_user_id = %v after refused bind", d["end_user_id"])
				}
				hb := env.Do("POST", "/v1/devices/me/heartbeat", fx.DeviceToken, `{}`)
				env.ExpectStatus(hb, 200)
			}},
		{name: "bind device unknown end user", method: "POST", path: "/v1/devices/{unbound}/bind",
			body: `{"end_user_id":"eu_unknown0000"}`, status: 404, code: "not_found", param: "end_user_id"},
		{name: "bind device malformed end user", method: "POST", path: "/v1/devices/{unbound}/bind",
			body: `{"end_user_id":"eu_bad-id"}`, status: 404, code: "not_found", param: "end_user_id"},
		{name: "bind device no end user", method: "POST", path: "/v1/devices/{unbound}/bind",
			body: `{}`, status: 400, code: "invalid_request", param: "end_user_id"},
		{name: "bind device end user number", method: "POST", path: "/v1/devices/{unbound}/bind",
			body: `{"end_user_id":5}`, status: 400, code: "invalid_request", param: "end_user_id"},
		{name: "bind device unknown device", method: "POST", path: "/v1/devices/dev_unknown0000/bind",
			body: `{"end_user_id":"{eu}"}`, status: 404, code: "not_found", param: "id"},
		{name: "unbind device", method: "POST", path: "/v1/devices/{dev}/unbind", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkDevice(t, env, r.Body)
				if r.Body["status"] != "unbound" {
					t.Errorf("status = %v", r.Body["status"])
				}
				env.ExpectError(env.Do("POST", "/v1/devices/me/heartbeat", fx.DeviceToken, `{}`),
					401, "unauthorized", "")
			}},
		{name: "unbind unbound device", method: "POST", path: "/v1/devices/{unbound}/unbind", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				if r.Body["status"] != "unbound" || r.Body["binding_generation"] != float64(0) {
					t.Errorf("unbind no-op: %v", r.Body)
				}
			}},
		{name: "unbind unknown device", method: "POST", path: "/v1/devices/dev_unknown0000/unbind",
			status: 404, code: "not_found", param: "id"},
		{name: "heartbeat with key", method: "POST", path: "/v1/devices/{dev}/heartbeat",
			body: `{"battery_percent":15,"storage_used_mb":95,"storage_total_mb":100,"signal_strength_dbm":-70,` +
				`"firmware_version":"1.3.0","device_state":"recording","pending_recordings":2,"flags":8,` +
				`"connection_type":["wifi","ble"]}`,
			status: 200, check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkHeartbeatReply(t, r)
				d := env.Do("GET", "/v1/devices/"+fx.DeviceID, env.TestKey, nil).Body
				checkDevice(t, env, d)
				want := map[string]any{"battery_percent": float64(15), "storage_used_mb": float64(95),
					"storage_total_mb": float64(100), "signal_strength_dbm": float64(-70),
					"firmware_version": "1.3.0"}
				for k, v := range want {
					if d[k] != v {
						t.Errorf("%s = %v, want %v", k, d[k], v)
					}
				}
				if d["last_heartbeat_at"] == nil {
					t.Errorf("last_heartbeat_at is null after a heartbeat")
				}
				st, _ := d["recording_state"].(map[string]any)
				if st["device_state"] != "recording" || st["pending_recordings"] != float64(2) || st["flags"] != float64(8) {
					t.Errorf("recording_state = %v", d["recording_state"])
				}
				stats := env.Do("GET", "/v1/devices/stats", env.TestKey, nil).Body
				for k, v := range map[string]float64{"online_count": 1, "low_battery_count": 1,
					"storage_full_count": 1, "total_count": 2} {
					if stats[k] != v {
						t.Errorf("stats %s = %v, want %v", k, stats[k], v)
					}
				}
			}},
		{name: "heartbeat empty body", method: "POST", path: "/v1/devices/{dev}/heartbeat", status: 200},
		{name: "heartbeat device token me", method: "POST", path: "/v1/devices/me/heartbeat", device: true,
			body: `{"battery_percent":80}`, status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkHeartbeatReply(t, r)
				d := env.Do("GET", "/v1/devices/"+fx.DeviceID, env.TestKey, nil).Body
				if d["battery_percent"] != float64(80) {
					t.Errorf("battery_percent = %v, want 80", d["battery_percent"])
				}
			}},
		{name: "heartbeat device token own id", method: "POST", path: "/v1/devices/{dev}/heartbeat",
			device: true, body: `{}`, status: 200},
		{name: "heartbeat battery 101", method: "POST", path: "/v1/devices/{dev}/heartbeat",
			body: `{"battery_percent":101}`, status: 400, code: "invalid_request", param: "battery_percent"},
		{name: "heartbeat signal positive", method: "POST", path: "/v1/devices/{dev}/heartbeat",
			body: `{"signal_strength_dbm":5}`, status: 400, code: "invalid_request", param: "signal_strength_dbm"},
		{name: "heartbeat bad state", method: "POST", path: "/v1/devices/{dev}/heartbeat",
			body: `{"device_state":"dancing"}`, status: 400, code: "invalid_request", param: "device_state"},
		{name: "heartbeat bad connection", method: "POST", path: "/v1/devices/{dev}/heartbeat",
			body: `{"connection_type":["5g"]}`, status: 400, code: "invalid_request", param: "connection_type"},
		{name: "heartbeat flags 256", method: "POST", path: "/v1/devices/{dev}/heartbeat",
			body: `{"flags":256}`, status: 400, code: "invalid_request", param: "flags"},
		{name: "heartbeat long name", method: "POST", path: "/v1/devices/{dev}/heartbeat",
			body: `{"name":"` + strings.Repeat("n", 65) + `"}`, status: 400, code: "invalid_request", param: "name"},
		{name: "heartbeat unknown device", method: "POST", path: "/v1/devices/dev_unknown0000/heartbeat",
			body: `{}`, status: 404, code: "not_found", param: "id"},
		{name: "refresh token", method: "POST", path: "/v1/devices/me/token/refresh", device: true,
			status: 200, check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				checkDevice(t, env, r.Body)
				tok := r.String("device_token")
				if !strings.HasPrefix(tok, "dtok_") || tok == fx.DeviceToken {
					t.Errorf("device_token = %q, want a new dtok_", tok)
				}
			}},
		{name: "refresh token with key", method: "POST", path: "/v1/devices/{dev}/token/refresh",
			status: 403, code: "forbidden", param: ""},
		{name: "device state", method: "GET", path: "/v1/devices/{dev}/state", status: 200,
			check: func(t *testing.T, env *apitest.Env, fx fixture, r *apitest.Response) {
				requireKeys(t, "state", r.Body, []string{"device_id", "project_id", "online", "recording",
					"battery_percent", "storage_used_mb", "storage_total_mb", "last_heartbeat_at",
					"binding_generation", "recording_state", "last_synced_at", "last_seen_by", "last_synced_by"})
				if r.Body["device_id"] != fx.DeviceID || r.Body["online"] != false {
					t.Errorf("state = %v", r.Body)
				}
			}},
		{name: "device state unknown", method: "GET", path: "/v1/devices/dev_unknown0000/state",
			status: 404, code: "not_found", param: "id"},

		// Anything else.
		{name: "unknown endpoint", method: "GET", path: "/v1/nothing-here", status: 404, code: "not_found"},
		{name: "wrong method", method: "PUT", path: "/v1/devices/{dev}/unbind", status: 405, code: "method_not_allowed"},
	}

	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		base := apitest.New(t, b)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				// A project per case keeps the counts of list cases exact.
				env := base.For(t).NewProject()
				fx := newFixture(env)
				token := env.TestKey
				if tc.device {
					token = fx.DeviceToken
				}
				var body any
				if tc.body != "" {
					body = fx.expand(tc.body)
				}
				r := env.Do(tc.method, fx.expand(tc.path), token, body)
				if tc.code != "" {
					env.ExpectError(r, tc.status, tc.code, tc.param)
				} else if r.Status != tc.status {
					t.Fatalf("status = %d, want %d; body %s", r.Status, tc.status, r.Raw)
				} else if tc.status != 204 && r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("Content-Type = %q", r.Header.Get("Content-Type"))
				}
				if tc.check != nil {
					tc.check(t, env, fx, r)
				}
			})
		}
	})
}

func checkHeartbeatReply(t *testing.T, r *apitest.Response) {
	t.Helper()
	requireKeys(t, "heartbeat", r.Body, []string{"status", "commands", "ota", "config_version"})
	if r.Body["status"] != "ok" {
		t.Errorf("heartbeat status = %v", r.Body["status"])
	}
	if c, ok := r.Body["commands"].([]any); !ok || len(c) != 0 {
		t.Errorf("heartbeat commands = %v, want []", r.Body["commands"])
	}
}

func checkList(t *testing.T, r *apitest.Response) {
	t.Helper()
	requireKeys(t, "list", r.Body, []string{"data", "has_more", "next_cursor"})
	if _, ok := r.Body["data"].([]any); !ok {
		t.Errorf("data = %v, want an array", r.Body["data"])
	}
	if _, ok := r.Body["has_more"].(bool); !ok {
		t.Errorf("has_more = %v, want a boolean", r.Body["has_more"])
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strconv.Itoa(i) + `":"v"`)
	}
	b.WriteString("}")
	return b.String()
}
