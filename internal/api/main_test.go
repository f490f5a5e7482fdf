package api_test

import (
	"os"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
	"github.com/botaserver/bota/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopAll()
	os.Exit(code)
}

// eachBackend runs fn as a parallel subtest per database back end.
func eachBackend(t *testing.T, fn func(t *testing.T, b apitest.Backend)) {
	t.Helper()
	for _, b := range apitest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// eachEnv runs fn as a parallel subtest per back end, each with its own
// server.
func eachEnv(t *testing.T, fn func(t *testing.T, env *apitest.Env), opts ...apitest.Option) {
	t.Helper()
	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		fn(t, apitest.New(t, b, opts...))
	})
}

// Keys that clients read and that must be present even when null.
var (
	deviceKeys = []string{
		"id", "project_id", "serial_number", "model", "device_type", "firmware_version", "name",
		"status", "end_user_id", "bound_at", "binding_generation", "battery_percent",
		"storage_used_mb", "storage_total_mb", "signal_strength_dbm", "last_heartbeat_at",
		"recording_state", "metadata", "settings", "created_at", "updated_at", "deleted_at",
	}
	endUserKeys = []string{
		"id", "project_id", "external_id", "email", "name", "metadata", "created_at",
		"updated_at", "deleted_at",
	}
)

var (
	devicePattern  = apitest.IDPattern("dev")
	endUserPattern = apitest.IDPattern("eu")
	projectPattern = apitest.IDPattern("proj")
	keyPattern     = apitest.IDPattern("key")
)

// checkDevice checks a device object's keys, id syntax, timestamps and
// null rules.
func checkDevice(t *testing.T, env *apitest.Env, d map[string]any) {
	t.Helper()
	requireKeys(t, "device", d, deviceKeys)
	if id, _ := d["id"].(string); !devicePattern.MatchString(id) {
		t.Errorf("device id = %v, want %s", d["id"], devicePattern)
	}
	if d["project_id"] != env.Project.ID {
		t.Errorf("device project_id = %v, want %s", d["project_id"], env.Project.ID)
	}
	checkObject(t, "device metadata", d["metadata"])
	checkObject(t, "device settings", d["settings"])
	checkTime(t, "device created_at", d["created_at"], false)
	checkTime(t, "device updated_at", d["updated_at"], false)
	checkTime(t, "device bound_at", d["bound_at"], true)
	checkTime(t, "device last_heartbeat_at", d["last_heartbeat_at"], true)
	if d["deleted_at"] != nil {
		t.Errorf("device deleted_at = %v, want null", d["deleted_at"])
	}
	if _, ok := d["binding_generation"].(float64); !ok {
		t.Errorf("device binding_generation = %v, want a number", d["binding_generation"])
	}
	switch d["status"] {
	case "bound":
		if id, _ := d["end_user_id"].(string); !endUserPattern.MatchString(id) {
			t.Errorf("bound device end_user_id = %v", d["end_user_id"])
		}
		if d["bound_at"] == nil {
			t.Errorf("bound device has bound_at null")
		}
	case "unbound":
		if d["end_user_id"] != nil || d["bound_at"] != nil {
			t.Errorf("unbound device end_user_id = %v, bound_at = %v; want null",
				d["end_user_id"], d["bound_at"])
		}
	default:
		t.Errorf("device status = %v, want bound or unbound", d["status"])
	}
}

// checkEndUser checks an end user object.
func checkEndUser(t *testing.T, env *apitest.Env, u map[string]any) {
	t.Helper()
	requireKeys(t, "end user", u, endUserKeys)
	if id, _ := u["id"].(string); !endUserPattern.MatchString(id) {
		t.Errorf("end user id = %v, want %s", u["id"], endUserPattern)
	}
	if u["project_id"] != env.Project.ID {
		t.Errorf("end user project_id = %v, want %s", u["project_id"], env.Project.ID)
	}
	checkObject(t, "end user metadata", u["metadata"])
	checkTime(t, "end user created_at", u["created_at"], false)
	checkTime(t, "end user updated_at", u["updated_at"], false)
	if u["deleted_at"] != nil {
		t.Errorf("end user deleted_at = %v, want null", u["deleted_at"])
	}
}

func requireKeys(t *testing.T, what string, m map[string]any, want []string) {
	t.Helper()
	if m == nil {
		t.Errorf("%s: no object", what)
		return
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: key %q is missing", what, k)
		}
	}
}

func checkObject(t *testing.T, what string, v any) {
	t.Helper()
	if _, ok := v.(map[string]any); !ok {
		t.Errorf("%s = %#v, want an object", what, v)
	}
}

func checkTime(t *testing.T, what string, v any, nullable bool) {
	t.Helper()
	if v == nil && nullable {
		return
	}
	s, _ := v.(string)
	if !apitest.TimestampPattern.MatchString(s) {
		t.Errorf("%s = %#v, want %s", what, v, apitest.TimestampPattern)
	}
}

// str returns m[key] as a string.
func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
