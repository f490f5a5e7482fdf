package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/store/sqlite"
)

// sqliteTenant returns a migrated SQLite store in a temporary folder and
// the test mode of a new project in it.
func sqliteTenant(t *testing.T) (*store.Store, model.Tenant) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "bota.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := st.CreateProject(ctx, "batch")
	if err != nil {
		t.Fatal(err)
	}
	return st, model.Tenant{ProjectID: p.ID, Mode: "test"}
}

// Writes that share a SQLite transaction keep their own outcomes: a
// conflict fails its writer alone and every other row lands.
func TestGroupedWritesKeepOwnResults(t *testing.T) {
	st, tenant := sqliteTenant(t)
	ctx := context.Background()

	// 200 writers, 64 at a time, and every fourth external id is used
	// twice.
	const writers = 200
	errs := make([]error, writers)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ext := fmt.Sprintf("user-%d", i)
			if i%4 == 3 {
				ext = fmt.Sprintf("user-%d", i-1)
			}
			errs[i] = st.CreateEndUser(ctx, &model.EndUser{Tenant: tenant, ExternalID: &ext})
		})
	}
	wg.Wait()

	conflicts := 0
	for i, err := range errs {
		switch {
		case errors.Is(err, store.ErrConflict):
			conflicts++
		case err != nil:
			t.Errorf("writer %d: %v", i, err)
		}
	}
	// Each pair has one winner and one conflict.
	if want := writers / 4; conflicts != want {
		t.Errorf("%d conflicts, want %d", conflicts, want)
	}
	users, _, err := st.EndUsers(ctx, tenant, store.EndUserFilter{}, store.Page{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if want := writers - writers/4; len(users) != want {
		t.Errorf("%d end users stored, want %d", len(users), want)
	}
}

// A writer waiting behind a long transaction gives up with its context,
// and writes go through again once the transaction ends.
func TestWriteWaitEndsWithContext(t *testing.T) {
	st, tenant := sqliteTenant(t)
	ctx := context.Background()

	inTx, release := make(chan struct{}), make(chan struct{})
	txDone := make(chan error, 1)
	go func() {
		txDone <- st.InTx(ctx, func(*store.Store) error {
			close(inTx)
			<-release
			return nil
		})
	}()
	<-inTx

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := st.CreateEndUser(short, &model.EndUser{Tenant: tenant})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("write behind a transaction: err = %v, want context.DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("write gave up after %s, want about 100ms", waited)
	}

	close(release)
	if err := <-txDone; err != nil {
		t.Fatalf("InTx: %v", err)
	}
	if err := st.CreateEndUser(ctx, &model.EndUser{Tenant: tenant}); err != nil {
		t.Errorf("write after the transaction: %v", err)
	}
	users, _, err := st.EndUsers(ctx, tenant, store.EndUserFilter{}, store.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 {
		t.Errorf("%d end users stored, want 1 (the withdrawn write must not land)", len(users))
	}
}
