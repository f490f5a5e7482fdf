package api_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/apitest"
)

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	routes := []struct{ method, path, body string }{
		{"GET", "/admin/v1/projects", ""},
		{"POST", "/admin/v1/projects", `{"name":"x"}`},
		{"GET", "/admin/v1/projects/{proj}", ""},
		{"GET", "/admin/v1/projects/{proj}/keys", ""},
		{"POST", "/admin/v1/projects/{proj}/keys", `{"mode":"test"}`},
		{"DELETE", "/admin/v1/keys/{key}", ""},
	}
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		disabled := apitest.New(t, apitest.SQLite(), apitest.WithConfig(func(c *api.Config) { c.AdminToken = "" }))
		for _, rt := range routes {
			path := strings.NewReplacer("{proj}", env.Project.ID, "{key}", env.TestKeyID).Replace(rt.path)
			for _, token := range []string{"", "wrong", env.TestKey, apitest.AdminToken + "x", apitest.AdminToken[1:]} {
				var body any
				if rt.body != "" {
					body = rt.body
				}
				r := env.Do(rt.method, path, token, body)
				env.ExpectError(r, 401, "unauthorized", "")
			}
			r := disabled.Do(rt.method, path, apitest.AdminToken, nil)
			disabled.For(t).ExpectError(r, 401, "unauthorized", "")
		}
		// Nothing above revoked the key or made a project.
		env.ExpectStatus(env.Do("GET", "/v1/devices", env.TestKey, nil), 200)
		r := env.Do("GET", "/admin/v1/projects", apitest.AdminToken, nil)
		if n := len(r.Data()); n != 1 {
			t.Errorf("%d projects, want 1", n)
		}
	})
}

func TestAdminProjectsAndKeys(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		admin := apitest.AdminToken
		var secrets []string

		r := env.Do("POST", "/admin/v1/projects", admin, map[string]any{"name": "Acme"})
		env.ExpectStatus(r, 201)
		proj := str(r.Body, "id")
		if !projectPattern.MatchString(proj) || r.Body["name"] != "Acme" {
			t.Errorf("project = %s", r.Raw)
		}
		checkTime(t, "project created_at", r.Body["created_at"], false)
		keys, _ := r.Body["keys"].([]any)
		if len(keys) != 2 {
			t.Fatalf("keys = %v, want two", r.Body["keys"])
		}
		for i, mode := range []string{"test", "live"} {
			k, _ := keys[i].(map[string]any)
			secret := str(k, "secret")
			secrets = append(secrets, secret)
			if !strings.HasPrefix(secret, "sk_"+mode+"_") || k["mode"] != mode || k["type"] != "secret" ||
				k["project_id"] != proj || !keyPattern.MatchString(str(k, "id")) {
				t.Errorf("key %d = %v", i, k)
			}
			if len(secret) < len("sk_test_")+32 {
				t.Errorf("secret %q is short", secret)
			}
			list := env.Do("GET", "/v1/devices", secret, nil)
			if list.Status != 200 || len(list.Data()) != 0 {
				t.Errorf("new %s key lists devices: %d %s", mode, list.Status, list.Raw)
			}
		}

		r = env.Do("GET", "/admin/v1/projects", admin, nil)
		env.ExpectStatus(r, 200)
		var projectIDs []string
		for _, p := range r.Data() {
			projectIDs = append(projectIDs, str(p, "id"))
		}
		if !slices.Contains(projectIDs, proj) || !slices.Contains(projectIDs, env.Project.ID) {
			t.Errorf("projects = %v", projectIDs)
		}
		env.ExpectStatus(env.Do("GET", "/admin/v1/projects/"+proj, admin, nil), 200)
		env.ExpectError(env.Do("GET", "/admin/v1/projects/proj_unknown", admin, nil), 404, "not_found", "id")

		r = env.Do("POST", "/admin/v1/projects/"+proj+"/keys", admin,
			map[string]any{"mode": "live", "name": "reader", "scopes": []string{"devices:read"}})
		env.ExpectStatus(r, 201)
		restricted := str(r.Body, "secret")
		restrictedID := str(r.Body, "id")
		secrets = append(secrets, restricted)
		if !strings.HasPrefix(restricted, "rk_live_") || r.Body["type"] != "restricted" || r.Body["name"] != "reader" {
			t.Errorf("restricted key = %s", r.Raw)
		}
		if sc, _ := r.Body["scopes"].([]any); len(sc) != 1 || sc[0] != "devices:read" {
			t.Errorf("scopes = %v", r.Body["scopes"])
		}
		env.ExpectStatus(env.Do("GET", "/v1/devices", restricted, nil), 200)
		env.ExpectError(env.Do("POST", "/v1/devices", restricted, `{"serial_number":"x"}`),
			403, "insufficient_scope", "")
		env.ExpectError(env.Do("GET", "/v1/end-users", restricted, nil), 403, "insufficient_scope", "")

		bad := []struct {
			body  string
			path  string
			code  string
			param string
			want  int
		}{
			{`{"mode":"prod"}`, "/admin/v1/projects/" + proj + "/keys", "invalid_request", "mode", 400},
			{`{"mode":"test","scopes":["devices:delete"]}`, "/admin/v1/projects/" + proj + "/keys",
				"invalid_request", "scopes", 400},
			{`{"mode":"test","scopes":"devices:read"}`, "/admin/v1/projects/" + proj + "/keys",
				"invalid_request", "scopes", 400},
			{`{"mode":"test"}`, "/admin/v1/projects/proj_unknown/keys", "not_found", "id", 404},
			{`{"name":"` + strings.Repeat("n", 201) + `"}`, "/admin/v1/projects", "invalid_request", "name", 400},
			{`{"name":`, "/admin/v1/projects", "invalid_request", apitest.AnyParam, 400},
		}
		for _, b := range bad {
			env.ExpectError(env.Do("POST", b.path, admin, b.body), b.want, b.code, b.param)
		}

		r = env.Do("GET", "/admin/v1/projects/"+proj+"/keys", admin, nil)
		env.ExpectStatus(r, 200)
		if n := len(r.Data()); n != 3 {
			t.Errorf("%d keys, want 3", n)
		}
		for _, k := range r.Data() {
			if _, ok := k["secret"]; ok {
				t.Errorf("key list shows a secret field: %v", k)
			}
			hint := strings.TrimSuffix(str(k, "hint"), "...")
			if hint == "" || !slices.ContainsFunc(secrets, func(s string) bool { return strings.HasPrefix(s, hint) }) {
				t.Errorf("hint %q is no prefix of a secret", k["hint"])
			}
			if len(hint) > 16 {
				t.Errorf("hint %q shows too much of the secret", hint)
			}
		}
		for _, s := range secrets {
			if strings.Contains(string(r.Raw), s) {
				t.Errorf("key list contains a secret")
			}
		}
		env.ExpectError(env.Do("GET", "/admin/v1/projects/proj_unknown/keys", admin, nil), 404, "not_found", "id")

		r = env.Do("DELETE", "/admin/v1/keys/"+restrictedID, admin, nil)
		env.ExpectStatus(r, 200)
		checkTime(t, "revoked_at", r.Body["revoked_at"], false)
		if _, ok := r.Body["secret"]; ok {
			t.Errorf("revoke shows the secret")
		}
		env.ExpectError(env.Do("GET", "/v1/devices", restricted, nil), 401, "unauthorized", "")
		env.ExpectError(env.Do("DELETE", "/admin/v1/keys/key_unknown", admin, nil), 404, "not_found", "id")
		r = env.Do("GET", "/admin/v1/projects/"+proj+"/keys", admin, nil)
		for _, k := range r.Data() {
			if k["id"] == restrictedID && k["revoked_at"] == nil {
				t.Errorf("revoked key shows revoked_at null")
			}
		}
		// The other keys of the project still work.
		env.ExpectStatus(env.Do("GET", "/v1/devices", secrets[0], nil), 200)

		logs := env.Logs()
		for _, s := range append(secrets, apitest.AdminToken) {
			if strings.Contains(logs, s) {
				t.Errorf("server log contains a secret")
			}
		}
	})
}

func TestHealth(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		for _, token := range []string{"", "garbage", env.TestKey} {
			r := env.Do("GET", "/health", token, nil)
			env.ExpectStatus(r, 200)
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			want := map[string]any{"status": "healthy", "database": "connected", "billing": "disabled"}
			if len(r.Body) != 3 {
				t.Errorf("health keys = %v, want exactly status, database, billing", r.Body)
			}
			for k, v := range want {
				if r.Body[k] != v {
					t.Errorf("%s = %v, want %v", k, r.Body[k], v)
				}
			}
		}

		down := apitest.New(t, apitest.SQLite())
		down.Allow5xx = true
		if err := down.Store.Close(); err != nil {
			t.Fatal(err)
		}
		r := down.For(t).Do("GET", "/health", "", nil)
		if r.Status != 503 || len(r.Body) != 3 || r.Body["status"] != "unhealthy" ||
			r.Body["database"] != "disconnected" {
			t.Errorf("health with the database closed: %d %s", r.Status, r.Raw)
		}
	})
}

// TestAdminErrorsAreJSON checks that unknown admin paths and methods get
// the API's error object, as /v1 does, and not the mux's plain text.
func TestAdminErrorsAreJSON(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.SQLite())
	cases := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/admin/v1/nothing", 404, "not_found"},
		{"POST", "/admin/v1/keys/key_x", 404, "not_found"},
		{"PUT", "/admin/v1/projects/" + env.Project.ID, 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			env := env.For(t)
			env.ExpectError(env.Do(tc.method, tc.path, apitest.AdminToken, nil), tc.status, tc.code, "")
			env.ExpectError(env.Do(tc.method, tc.path, "", nil), 401, "unauthorized", "")
		})
	}
}

// TestAdminKeyEmptyScopes checks that an explicit empty scope list never
// yields a key with every scope: it is either rejected or restricted.
func TestAdminKeyEmptyScopes(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.SQLite())
	r := env.Do("POST", "/admin/v1/projects/"+env.Project.ID+"/keys", apitest.AdminToken,
		`{"mode":"test","scopes":[]}`)
	if r.Status == 400 {
		env.ExpectError(r, 400, "invalid_request", "scopes")
		return
	}
	env.ExpectStatus(r, 201)
	if r.Body["type"] != "restricted" {
		t.Errorf("key asked with scopes [] has type %v", r.Body["type"])
	}
	w := env.Do("POST", "/v1/end-users", r.String("secret"), `{}`)
	if w.Status != 403 {
		t.Errorf("key asked with scopes [] can create end users: %d", w.Status)
	}
}
