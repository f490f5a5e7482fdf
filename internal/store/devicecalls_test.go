package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/store/postgres"
	"github.com/botaserver/bota/internal/testenv"
)

// eachEngine runs fn on a migrated SQLite store and a migrated PostgreSQL
// store, each with a new project.
func eachEngine(t *testing.T, fn func(t *testing.T, st *store.Store, tenant model.Tenant)) {
	t.Run("sqlite", func(t *testing.T) {
		st, tenant := sqliteTenant(t)
		fn(t, st, tenant)
	})
	t.Run("postgres", func(t *testing.T) {
		ctx := context.Background()
		st, pool, err := postgres.Open(ctx, testenv.PostgresURL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close(); pool.Close() })
		if err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		p, err := st.CreateProject(ctx, "combined")
		if err != nil {
			t.Fatal(err)
		}
		fn(t, st, model.Tenant{ProjectID: p.ID, Mode: "test"})
	})
}

// boundDevice registers a device, binds it and returns it with the hash
// of its token.
func boundDevice(t *testing.T, st *store.Store, tenant model.Tenant, serial string) (*model.Device, string) {
	t.Helper()
	ctx := context.Background()
	d, _, err := st.RegisterDevice(ctx, &model.Device{Tenant: tenant, SerialNumber: serial, Model: "pin"})
	if err != nil {
		t.Fatal(err)
	}
	u := &model.EndUser{Tenant: tenant}
	if err := st.CreateEndUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	hash := ids.Hash(ids.NewSecret("dtok_"))
	err = st.InTx(ctx, func(tx *store.Store) error {
		_, err := tx.BindDevice(ctx, tenant, d.ID, u.ID, hash, nil, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, hash
}

// Token lookups and heartbeats that share statements keep their own
// results. Each caller gets its own device, and two heartbeats of one
// device at the same time both land. A device of another project and an
// unknown token are not found.
func TestCombinedCallsKeepOwnResults(t *testing.T) {
	eachEngine(t, func(t *testing.T, st *store.Store, tenant model.Tenant) {
		ctx := context.Background()
		p, err := st.CreateProject(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		other := model.Tenant{ProjectID: p.ID, Mode: "test"}
		foreign, _ := boundDevice(t, st, other, "foreign")

		const devices = 80
		devs := make([]*model.Device, devices)
		hashes := make([]string, devices)
		for i := range devs {
			devs[i], hashes[i] = boundDevice(t, st, tenant, fmt.Sprintf("sn-%d", i))
		}

		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failures []string
		fail := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			failures = append(failures, fmt.Sprintf(format, args...))
		}
		for i, d := range devs {
			battery, name := i%101, fmt.Sprintf("dev-%d", i)
			patch := json.RawMessage(fmt.Sprintf(`{"pending_recordings":%d}`, i))
			wg.Go(func() {
				<-start
				tok, err := st.DeviceTokenByHash(ctx, hashes[i])
				if err != nil || tok.DeviceID != d.ID || tok.Tenant != tenant {
					fail("token %d: %+v, %v; want device %s", i, tok, err, d.ID)
				}
			})
			wg.Go(func() {
				<-start
				if err := st.RecordHeartbeat(ctx, tenant, d.ID, store.Heartbeat{BatteryPercent: &battery}); err != nil {
					fail("battery heartbeat %d: %v", i, err)
				}
			})
			wg.Go(func() {
				<-start
				err := st.RecordHeartbeat(ctx, tenant, d.ID, store.Heartbeat{Name: &name, StatePatch: patch})
				if err != nil {
					fail("name heartbeat %d: %v", i, err)
				}
			})
		}
		for i := range 20 {
			wg.Go(func() {
				<-start
				if _, err := st.DeviceTokenByHash(ctx, ids.Hash(fmt.Sprintf("dtok_unknown_%d", i))); !errors.Is(err, store.ErrNotFound) {
					fail("unknown token %d: err = %v, want ErrNotFound", i, err)
				}
			})
			wg.Go(func() {
				<-start
				battery := 5
				err := st.RecordHeartbeat(ctx, tenant, foreign.ID, store.Heartbeat{BatteryPercent: &battery})
				if !errors.Is(err, store.ErrNotFound) {
					fail("heartbeat for another project's device: err = %v, want ErrNotFound", err)
				}
			})
		}
		close(start)
		wg.Wait()
		for _, f := range failures {
			t.Error(f)
		}

		for i, d := range devs {
			got, err := st.Device(ctx, tenant, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			var state struct {
				Pending int `json:"pending_recordings"`
			}
			if err := json.Unmarshal(got.RecordingState, &state); err != nil {
				t.Fatalf("device %d recording_state %s: %v", i, got.RecordingState, err)
			}
			if got.BatteryPercent == nil || *got.BatteryPercent != i%101 || got.Name == nil ||
				*got.Name != fmt.Sprintf("dev-%d", i) || state.Pending != i || got.LastHeartbeatAt == nil {
				t.Errorf("device %d: battery %v, name %v, recording_state %s, last heartbeat %v; want %d, dev-%d, %d pending",
					i, ptrText(got.BatteryPercent), ptrText(got.Name), got.RecordingState, got.LastHeartbeatAt, i%101, i, i)
			}
		}
		f, err := st.Device(ctx, other, foreign.ID)
		if err != nil {
			t.Fatal(err)
		}
		if f.BatteryPercent != nil || f.LastHeartbeatAt != nil {
			t.Errorf("another project's device took a heartbeat: battery %v", ptrText(f.BatteryPercent))
		}
	})
}

func ptrText[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// A heartbeat that fails its shared statement fails alone: the others of
// its group run again on their own and land.
func TestCombinedHeartbeatFailsAlone(t *testing.T) {
	eachEngine(t, func(t *testing.T, st *store.Store, tenant model.Tenant) {
		ctx := context.Background()
		const devices = 40
		devs := make([]*model.Device, devices)
		for i := range devs {
			devs[i], _ = boundDevice(t, st, tenant, fmt.Sprintf("sn-%d", i))
		}

		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, devices)
		for i, d := range devs {
			patch := json.RawMessage(`{"flags":1}`)
			if i == devices/2 {
				// Not JSON: both engines reject the merge.
				patch = json.RawMessage(`{"flags":`)
			}
			wg.Go(func() {
				<-start
				errs[i] = st.RecordHeartbeat(ctx, tenant, d.ID, store.Heartbeat{StatePatch: patch})
			})
		}
		close(start)
		wg.Wait()

		for i, err := range errs {
			if i == devices/2 {
				if err == nil {
					t.Errorf("heartbeat %d with a malformed patch: err = nil, want an error", i)
				}
				continue
			}
			if err != nil {
				t.Errorf("heartbeat %d: %v", i, err)
			}
		}
		for i, d := range devs {
			got, err := st.Device(ctx, tenant, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			landed := got.LastHeartbeatAt != nil
			if want := i != devices/2; landed != want {
				t.Errorf("device %d: heartbeat stored = %v, want %v", i, landed, want)
			}
		}
	})
}

// A heartbeat sent with a token hash lands only when that token is usable,
// was used before and belongs to the device, also when it shares its
// statement with heartbeats that pass.
func TestTokenHeartbeatChecksToken(t *testing.T) {
	eachEngine(t, func(t *testing.T, st *store.Store, tenant model.Tenant) {
		ctx := context.Background()
		const devices = 30
		devs := make([]*model.Device, devices)
		hashes := make([]string, devices)
		for i := range devs {
			devs[i], hashes[i] = boundDevice(t, st, tenant, fmt.Sprintf("sn-%d", i))
		}
		// Devices 0 to 9 have used their tokens, 10 to 19 have not, and
		// 20 to 29 send the used token of device i-20.
		for _, hash := range hashes[:10] {
			if _, err := st.DeviceTokenByHash(ctx, hash); err != nil {
				t.Fatal(err)
			}
		}
		token := func(i int) string {
			if i >= 20 {
				return hashes[i-20]
			}
			return hashes[i]
		}

		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, devices)
		for i, d := range devs {
			battery := 40 + i
			wg.Go(func() {
				<-start
				errs[i] = st.RecordTokenHeartbeat(ctx, tenant, d.ID, token(i), store.Heartbeat{BatteryPercent: &battery})
			})
		}
		close(start)
		wg.Wait()

		for i, d := range devs {
			want := i < 10
			if (errs[i] == nil) != want || (errs[i] != nil && !errors.Is(errs[i], store.ErrNotFound)) {
				t.Errorf("device %d: err = %v, want success %v or ErrNotFound", i, errs[i], want)
			}
			got, err := st.Device(ctx, tenant, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			if landed := got.BatteryPercent != nil && *got.BatteryPercent == 40+i; landed != want {
				t.Errorf("device %d: heartbeat stored = %v, want %v", i, landed, want)
			}
		}
		if err := st.RecordTokenHeartbeat(ctx, tenant, devs[0].ID, "", store.Heartbeat{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("empty token hash: err = %v, want ErrNotFound", err)
		}
	})
}
