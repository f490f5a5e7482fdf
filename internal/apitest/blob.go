package apitest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/blob/s3"
	"github.com/botaserver/bota/internal/testenv"
)

// BlobBackend is a media store the server can run on.
type BlobBackend struct {
	// Name is "disk" or "s3"; tests use it in subtest names.
	Name string
}

// Blob back ends.
var (
	// DiskBlobs is the local store of New, served on the server's own
	// /uploads/ path.
	DiskBlobs = BlobBackend{Name: "disk"}
	// S3Blobs is a bucket on the versitygw server of testenv.S3.
	S3Blobs = BlobBackend{Name: "s3"}
)

// BlobBackends returns the disk and S3 back ends.
func BlobBackends() []BlobBackend { return []BlobBackend{DiskBlobs, S3Blobs} }

// BlobEnv is an Env whose server stores media on a chosen blob back end.
type BlobEnv struct {
	*Env
	// Blob is the server's media store.
	Blob blob.Store
	// BlobName is the back end's name ("disk" or "s3").
	BlobName string
}

// NewWithBlob starts a server like New whose media go to blob back end
// bb. With S3Blobs the server has its own empty bucket, Config.PublicURL
// is the test server's URL (chunk URL templates point at it), and
// Env.Blobs is nil because no local store serves /uploads/.
func NewWithBlob(t testing.TB, b Backend, bb BlobBackend, opts ...Option) *BlobEnv {
	t.Helper()
	env := New(t, b, opts...)
	if bb.Name == DiskBlobs.Name {
		return &BlobEnv{Env: env, Blob: env.Blobs, BlobName: bb.Name}
	}
	if bb.Name != S3Blobs.Name {
		t.Fatalf("apitest: unknown blob back end %q", bb.Name)
	}

	logger := slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := s3.New(context.Background(), s3.Config{URL: testenv.S3(t), Logger: logger})
	if err != nil {
		t.Fatalf("apitest: open S3 store: %v", err)
	}

	// The server's configuration needs the test server's URL, so the
	// handler is filled in after both exist, as in New.
	var handler http.Handler
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)

	cfg := env.Config
	cfg.PublicURL = hs.URL
	srv := api.New(cfg, env.Store, store, logger)
	handler = srv.Handler()

	c := *env
	c.Server, c.HTTP, c.URL, c.Config, c.Blobs = srv, hs, hs.URL, cfg, nil
	return &BlobEnv{Env: &c, Blob: store, BlobName: bb.Name}
}

// For returns a copy of the BlobEnv whose helpers report to t.
func (e *BlobEnv) For(t testing.TB) *BlobEnv {
	c := *e
	c.Env = e.Env.For(t)
	return &c
}
