package housekeeping_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/apitest"
	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/blob/disk"
	"github.com/botaserver/bota/internal/housekeeping"
	"github.com/botaserver/bota/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopAll()
	os.Exit(code)
}

// upload is one upload-url answer of the test.
type upload struct {
	recID, url string
	headers    map[string]string
}

func newUpload(t *testing.T, env *apitest.BlobEnv, token string, data []byte) upload {
	t.Helper()
	rec := env.Do("POST", "/v1/recordings", token, map[string]any{})
	env.ExpectStatus(rec, http.StatusCreated)
	u := env.Do("POST", "/v1/recordings/"+rec.String("id")+"/upload-url", token,
		map[string]any{"content_type": "audio/opus", "file_size_bytes": len(data)})
	env.ExpectStatus(u, http.StatusOK)
	h, _ := u.Body["headers"].(map[string]any)
	headers := map[string]string{}
	for k, v := range h {
		headers[k], _ = v.(string)
	}
	return upload{recID: rec.String("id"), url: u.String("upload_url"), headers: headers}
}

func (u upload) put(t *testing.T, data []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u.url, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range u.headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("PUT: status %d", res.StatusCode)
	}
}

func (u upload) key(t *testing.T, env *apitest.BlobEnv) string {
	t.Helper()
	media, err := env.Store.MediaOf(context.Background(), u.recID)
	if err != nil || len(media) != 1 {
		t.Fatalf("media of %s: %v, %d records", u.recID, err, len(media))
	}
	return media[0].StorageKey
}

func TestSweepStaleMedia(t *testing.T) {
	for _, b := range apitest.Backends(t) {
		for _, bb := range apitest.BlobBackends() {
			t.Run(b.Name+"/"+bb.Name, func(t *testing.T) {
				t.Parallel()
				testSweepStaleMedia(t, apitest.NewWithBlob(t, b, bb))
			})
		}
	}
}

func testSweepStaleMedia(t *testing.T, env *apitest.BlobEnv) {
	ctx := context.Background()
	cfg := housekeeping.Config{Store: env.Store, Blob: env.Blob,
		Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))}
	dev := env.NewBoundDevice()
	data := bytes.Repeat([]byte("OggS fake opus page "), 100)
	env.Clock.Freeze()

	// Put but never completed, never put, and completed.
	putOnly := newUpload(t, env, dev.Token, data)
	putOnly.put(t, data)
	never := newUpload(t, env, dev.Token, data)
	done := newUpload(t, env, dev.Token, data)
	done.put(t, data)
	r := env.Do("POST", "/v1/recordings/"+done.recID+"/upload-complete", dev.Token, map[string]any{})
	env.ExpectStatus(r, http.StatusOK)
	r = env.Do("POST", "/v1/recordings", dev.Token, map[string]any{}, "Idempotency-Key", "sweep-test-1")
	env.ExpectStatus(r, http.StatusCreated)

	res, err := housekeeping.SweepOnce(ctx, cfg)
	if err != nil {
		t.Fatalf("first sweep: %v", err)
	}
	if res != (housekeeping.Result{}) {
		t.Errorf("sweep of fresh uploads removed %+v, want nothing", res)
	}

	// The URLs expire after one hour; 24 h 59 min later nothing is stale
	// yet, but the idempotency key is older than 24 h.
	env.Clock.Advance(24*time.Hour + 59*time.Minute)
	res, err = housekeeping.SweepOnce(ctx, cfg)
	if err != nil {
		t.Fatalf("second sweep: %v", err)
	}
	if res.Media != 0 || res.IdempotencyKeys != 1 {
		t.Errorf("sweep at 24 h 59 min: %+v, want 0 media and 1 idempotency key", res)
	}

	fresh := newUpload(t, env, dev.Token, data)
	env.Clock.Advance(2 * time.Minute)
	putKey, doneKey := putOnly.key(t, env), done.key(t, env)
	res, err = housekeeping.SweepOnce(ctx, cfg)
	if err != nil {
		t.Fatalf("third sweep: %v", err)
	}
	if res.Media != 2 {
		t.Errorf("sweep at 25 h 1 min removed %d media, want 2", res.Media)
	}
	for _, id := range []string{putOnly.recID, never.recID} {
		if media, _ := env.Store.MediaOf(ctx, id); len(media) != 0 {
			t.Errorf("recording %s keeps %d stale media records", id, len(media))
		}
	}
	if _, err := env.Blob.Stat(ctx, putKey); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("stale object after the sweep: err = %v, want blob.ErrNotFound", err)
	}
	if _, err := env.Blob.Stat(ctx, doneKey); err != nil {
		t.Errorf("uploaded object after the sweep: %v", err)
	}
	if media, _ := env.Store.MediaOf(ctx, fresh.recID); len(media) != 1 {
		t.Errorf("fresh pending media was removed")
	}
	got := env.Do("GET", "/v1/recordings/"+done.recID, env.TestKey, nil)
	if got.String("status") != "uploaded" {
		t.Errorf("uploaded recording after the sweep: %s", got.Raw)
	}
}

func TestRunSweepsTempFiles(t *testing.T) {
	env := apitest.New(t, apitest.SQLite())
	dir := t.TempDir()
	store, err := disk.New(disk.Config{Dir: dir, PublicURL: "http://127.0.0.1:1",
		Secret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	old := filepath.Join(dir, "tmp", "put-abandoned")
	young := filepath.Join(dir, "tmp", "put-recent")
	for _, p := range []string{old, young} {
		if err := os.WriteFile(p, []byte("partial upload"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- housekeeping.Run(ctx, housekeeping.Config{Store: env.Store, Blob: store,
			Interval: 10 * time.Millisecond})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(old); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not remove %s within 10 s", old)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run returned %v after cancel, want nil", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("young temp file: %v", err)
	}

	if err := housekeeping.Run(context.Background(), housekeeping.Config{}); err == nil {
		t.Errorf("Run without Store and Blob returned nil")
	}
}
