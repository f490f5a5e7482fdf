package api_test

import (
	"sync"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
)

// TestConcurrentBind binds one unbound device to ten end users at once:
// exactly one bind may win, and the device must end up bound to the winner
// with the winner's token working.
func TestConcurrentBind(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		for round := range 5 {
			dev := str(env.RegisterDevice(), "id")
			const n = 10
			users := make([]string, n)
			for i := range users {
				users[i] = str(env.CreateEndUser(nil), "id")
			}
			responses := make([]*apitest.Response, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					responses[i] = env.Do("POST", "/v1/devices/"+dev+"/bind", env.TestKey,
						map[string]any{"end_user_id": users[i]})
				})
			}
			wg.Wait()

			winner := -1
			for i, r := range responses {
				switch r.Status {
				case 200:
					if winner >= 0 {
						t.Errorf("round %d: binds to %s and %s both succeeded", round, users[winner], users[i])
					}
					winner = i
				case 409:
					env.ExpectError(r, 409, "device_already_bound", "id")
				default:
					t.Fatalf("round %d: bind status %d: %s", round, r.Status, r.Raw)
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: no bind succeeded", round)
			}
			d := env.Do("GET", "/v1/devices/"+dev, env.TestKey, nil).Body
			if d["end_user_id"] != users[winner] || d["binding_generation"] != float64(1) {
				t.Errorf("round %d: device end_user_id %v, generation %v; want %s, 1",
					round, d["end_user_id"], d["binding_generation"], users[winner])
			}
			expectWorks(t, env, "winner's token", responses[winner].String("device_token"), true)
		}
	})
}

// TestConcurrentRegister registers one serial number ten times at once:
// one 201, nine 200, all naming the same device.
func TestConcurrentRegister(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		const n = 10
		responses := make([]*apitest.Response, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				responses[i] = env.Do("POST", "/v1/devices", env.TestKey, map[string]any{"serial_number": "SN-race"})
			})
		}
		wg.Wait()
		created := 0
		ids := map[string]bool{}
		for _, r := range responses {
			switch r.Status {
			case 201:
				created++
			case 200:
			default:
				t.Fatalf("register status %d: %s", r.Status, r.Raw)
			}
			ids[str(r.Body, "id")] = true
		}
		if created != 1 || len(ids) != 1 {
			t.Errorf("%d created, %d distinct ids; want 1 and 1", created, len(ids))
		}
	})
}

// TestConcurrentExternalID creates ten end users with one external_id at
// once: one 201, the rest 409 resource_already_exists.
func TestConcurrentExternalID(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		const n = 10
		responses := make([]*apitest.Response, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				responses[i] = env.Do("POST", "/v1/end-users", env.TestKey, map[string]any{"external_id": "race"})
			})
		}
		wg.Wait()
		created := 0
		for _, r := range responses {
			if r.Status == 201 {
				created++
				continue
			}
			env.ExpectError(r, 409, "resource_already_exists", "external_id")
		}
		if created != 1 {
			t.Errorf("%d end users created, want 1", created)
		}
	})
}
