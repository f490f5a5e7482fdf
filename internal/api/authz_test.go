package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
	"github.com/botaserver/bota/internal/auth"
)

// route is one endpoint of the public API as the authorization matrix
// calls it.
type route struct {
	method, path, body string
	// scope is what a restricted key needs; "" marks the device-only route.
	scope string
	// ok is the success status with a key (or a device token on
	// deviceRoute routes).
	ok int
	// ids marks paths that name a resource, which other tenants get as 404.
	ids bool
	// list marks list endpoints, which other tenants get empty.
	list bool
	// deviceRoute marks routes a device token may call for its own device.
	deviceRoute bool
	// keyAllowed is false on the device-only route.
	keyAllowed bool
}

var routes = []route{
	{method: "POST", path: "/v1/end-users", body: `{}`, scope: "end_users:write", ok: 201, keyAllowed: true},
	{method: "GET", path: "/v1/end-users", scope: "end_users:read", ok: 200, list: true, keyAllowed: true},
	{method: "GET", path: "/v1/end-users/{eu}", scope: "end_users:read", ok: 200, ids: true, keyAllowed: true},
	{method: "PATCH", path: "/v1/end-users/{eu}", body: `{"name":"changed"}`, scope: "end_users:write",
		ok: 200, ids: true, keyAllowed: true},
	{method: "DELETE", path: "/v1/end-users/{eu}", scope: "end_users:write", ok: 204, ids: true, keyAllowed: true},
	{method: "POST", path: "/v1/devices", body: `{"serial_number":"SN-authz"}`, scope: "devices:write",
		ok: 201, keyAllowed: true},
	{method: "GET", path: "/v1/devices", scope: "devices:read", ok: 200, list: true, keyAllowed: true},
	{method: "GET", path: "/v1/devices/stats", scope: "devices:read", ok: 200, keyAllowed: true},
	{method: "GET", path: "/v1/devices/{dev}", scope: "devices:read", ok: 200, ids: true, keyAllowed: true},
	{method: "PATCH", path: "/v1/devices/{dev}", body: `{"name":"changed"}`, scope: "devices:write",
		ok: 200, ids: true, keyAllowed: true},
	{method: "DELETE", path: "/v1/devices/{dev}", scope: "devices:write", ok: 204, ids: true, keyAllowed: true},
	{method: "POST", path: "/v1/devices/{dev}/bind", body: `{"end_user_id":"{eu}"}`, scope: "devices:write",
		ok: 200, ids: true, keyAllowed: true},
	{method: "POST", path: "/v1/devices/{dev}/unbind", scope: "devices:write", ok: 200, ids: true,
		keyAllowed: true},
	{method: "POST", path: "/v1/devices/{dev}/heartbeat", body: `{"battery_percent":1}`, scope: "devices:write",
		ok: 200, ids: true, deviceRoute: true, keyAllowed: true},
	{method: "GET", path: "/v1/devices/{dev}/state", scope: "devices:read", ok: 200, ids: true, keyAllowed: true},
	{method: "POST", path: "/v1/devices/{dev}/token/refresh", ok: 200, ids: true, deviceRoute: true},
}

func (r route) name() string { return r.method + " " + r.path }

// TestAuthorizationMatrix calls every endpoint with every kind of
// credential and checks the status, the error code, that nothing of the
// fixture leaks into a refusal, and that refused writes change nothing.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	type credential struct {
		name string
		// token returns the bearer secret for the route; "" sends none.
		token func(env *apitest.Env, fx fixture, rt route) string
		// want returns the expected status and error code of a route.
		want func(rt route) (int, string)
		// otherTenant marks keys of another project or mode, whose lists
		// must come back empty.
		otherTenant bool
	}
	otherScopes := func(scope string) []string {
		var out []string
		for _, s := range auth.Scopes {
			if s != scope {
				out = append(out, s)
			}
		}
		return out
	}
	unauthorized := func(route) (int, string) { return 401, "unauthorized" }
	success := func(rt route) (int, string) {
		if !rt.keyAllowed {
			return 403, "forbidden"
		}
		return rt.ok, ""
	}
	credentials := []credential{
		{name: "none", token: func(*apitest.Env, fixture, route) string { return "" }, want: unauthorized},
		{name: "wrong secret", want: unauthorized,
			token: func(*apitest.Env, fixture, route) string {
				return "sk_test_" + strings.Repeat("A", 40)
			}},
		{name: "garbage", want: unauthorized,
			token: func(*apitest.Env, fixture, route) string { return "not-a-credential" }},
		{name: "too long", want: unauthorized,
			token: func(env *apitest.Env, _ fixture, _ route) string { return env.TestKey + strings.Repeat("A", 300) }},
		{name: "live prefix on test key", want: unauthorized,
			token: func(env *apitest.Env, _ fixture, _ route) string {
				return strings.Replace(env.TestKey, "sk_test_", "sk_live_", 1)
			}},
		{name: "restricted prefix on secret key", want: unauthorized,
			token: func(env *apitest.Env, _ fixture, _ route) string {
				return strings.Replace(env.TestKey, "sk_test_", "rk_test_", 1)
			}},
		{name: "revoked key", want: unauthorized,
			token: func(env *apitest.Env, _ fixture, _ route) string {
				k := env.NewKey("test")
				env.RevokeKey(k.ID)
				return k.Secret
			}},
		{name: "revoked restricted key", want: unauthorized,
			token: func(env *apitest.Env, _ fixture, rt route) string {
				k := env.NewKey("test", auth.Scopes...)
				env.RevokeKey(k.ID)
				return k.Secret
			}},
		{name: "secret key", want: success,
			token: func(env *apitest.Env, _ fixture, _ route) string { return env.TestKey }},
		{name: "restricted key with scope", want: success,
			token: func(env *apitest.Env, _ fixture, rt route) string {
				if rt.scope == "" {
					return env.NewKey("test", "devices:write").Secret
				}
				return env.NewKey("test", rt.scope).Secret
			}},
		{name: "restricted key without scope",
			token: func(env *apitest.Env, _ fixture, rt route) string {
				return env.NewKey("test", otherScopes(rt.scope)...).Secret
			},
			want: func(rt route) (int, string) {
				if !rt.keyAllowed {
					return 403, "forbidden"
				}
				return 403, "insufficient_scope"
			}},
		{name: "other project", token: func(env *apitest.Env, _ fixture, _ route) string {
			return env.OtherProject().TestKey
		}, want: otherTenant, otherTenant: true},
		{name: "other mode", token: func(env *apitest.Env, _ fixture, _ route) string { return env.LiveKey },
			want: otherTenant, otherTenant: true},
		{name: "other mode restricted", want: otherTenant, otherTenant: true,
			token: func(env *apitest.Env, _ fixture, rt route) string {
				return env.NewKey("live", auth.Scopes...).Secret
			}},
		{name: "device token", token: func(_ *apitest.Env, fx fixture, _ route) string { return fx.DeviceToken },
			want: func(rt route) (int, string) {
				if rt.deviceRoute {
					return 200, ""
				}
				return 403, "forbidden"
			}},
		{name: "device token of other device",
			token: func(_ *apitest.Env, fx fixture, _ route) string { return fx.UnboundToken },
			want: func(rt route) (int, string) {
				if rt.deviceRoute {
					return 404, "not_found"
				}
				return 403, "forbidden"
			}},
		{name: "revoked device token", want: unauthorized,
			token: func(env *apitest.Env, fx fixture, _ route) string {
				other := env.NewBoundDevice()
				r := env.Do("POST", "/v1/devices/"+other.DeviceID+"/unbind", env.TestKey, nil)
				env.ExpectStatus(r, 200)
				return other.Token
			}},
	}

	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		base := apitest.New(t, b)
		for _, cred := range credentials {
			t.Run(cred.name, func(t *testing.T) {
				t.Parallel()
				for _, rt := range routes {
					t.Run(rt.name(), func(t *testing.T) {
						env := base.For(t).NewProject()
						fx := newFixture(env)
						// The second device's token is one of this project's
						// tokens for another device.
						fx.UnboundToken = env.BindDevice(fx.UnboundID, fx.OtherUserID)
						token := cred.token(env, fx, rt)
						before := snapshot(env, fx)

						var body any
						if rt.body != "" {
							body = fx.expand(rt.body)
						}
						r := env.Do(rt.method, fx.expand(rt.path), token, body)
						status, code := cred.want(rt)
						if rt.list && cred.otherTenant {
							if n := len(r.Data()); r.Status != 200 || n != 0 {
								t.Errorf("list of another tenant: status %d, %d rows: %s", r.Status, n, r.Raw)
							}
						}
						if code != "" {
							env.ExpectError(r, status, code, apitest.AnyParam)
							if code == "insufficient_scope" && !strings.Contains(r.Error()["message"].(string), rt.scope) {
								t.Errorf("message %q does not name scope %s", r.Error()["message"], rt.scope)
							}
							checkNoLeak(t, fx, r)
							if after := snapshot(env, fx); after != before {
								t.Errorf("refused request changed state:\nbefore %s\nafter  %s", before, after)
							}
							return
						}
						if r.Status != status {
							t.Fatalf("status = %d, want %d; body %s", r.Status, status, r.Raw)
						}
					})
				}
			})
		}
	})
}

// otherTenant is what a key of another project or mode gets: 404 on ids,
// an empty list on lists, and success on creates (in its own tenant).
func otherTenant(rt route) (int, string) {
	switch {
	case !rt.keyAllowed:
		return 403, "forbidden"
	case rt.ids:
		return 404, "not_found"
	default:
		return rt.ok, ""
	}
}

// checkNoLeak fails when a refusal shows data of the fixture that the
// request did not name.
func checkNoLeak(t *testing.T, fx fixture, r *apitest.Response) {
	t.Helper()
	for _, secret := range []string{fx.Serial, fx.ExternalID, fx.OtherExtID, fx.DeviceToken, fx.UnboundToken} {
		if secret != "" && strings.Contains(string(r.Raw), secret) {
			t.Errorf("refusal shows %q: %s", secret, r.Raw)
		}
	}
}

// snapshot returns the id, updated_at and status of every end user and
// device the test key lists, to compare before and after a rejected
// request.
func snapshot(env *apitest.Env, fx fixture) string {
	env.T().Helper()
	var parts []string
	for _, path := range []string{"/v1/end-users?limit=100", "/v1/devices?limit=100"} {
		r := env.Do("GET", path, env.TestKey, nil)
		if r.Status != http.StatusOK {
			env.T().Fatalf("snapshot %s: %d %s", path, r.Status, r.Raw)
		}
		for _, row := range r.Data() {
			parts = append(parts, str(row, "id")+"/"+str(row, "updated_at")+"/"+str(row, "status"))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}
