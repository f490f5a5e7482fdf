package s3_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/blob/blobtest"
	"github.com/botaserver/bota/internal/blob/s3"
	"github.com/botaserver/bota/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopAll()
	os.Exit(code)
}

func newStore(t testing.TB, storageURL string) *s3.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3.New(ctx, s3.Config{URL: storageURL})
	if err != nil {
		t.Fatalf("s3.New(%q): %v", storageURL, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t testing.TB) blob.Store {
		return newStore(t, testenv.S3(t))
	})
}

func TestPresignPutSignsContentType(t *testing.T) {
	s := newStore(t, testenv.S3(t))
	u, err := s.PresignPut(context.Background(), "k/audio.opus", blob.PutOptions{
		ContentType: "audio/opus", ContentLength: 10, Expires: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}
	parsed, err := url.Parse(u.URL)
	if err != nil {
		t.Fatalf("parse URL: %v", err)
	}
	signed := strings.Split(parsed.Query().Get("X-Amz-SignedHeaders"), ";")
	for _, want := range []string{"content-length", "content-type", "host"} {
		found := false
		for _, h := range signed {
			found = found || h == want
		}
		if !found {
			t.Errorf("X-Amz-SignedHeaders = %v, missing %q", signed, want)
		}
	}
	if len(u.Headers) != 1 || u.Headers["Content-Type"] != "audio/opus" {
		t.Errorf("Headers = %v, want only Content-Type: audio/opus", u.Headers)
	}
	if !strings.HasPrefix(parsed.Path, "/"+s.Bucket()+"/") {
		t.Errorf("URL path %q is not path-style under /%s/", parsed.Path, s.Bucket())
	}
}

func TestURLPrefix(t *testing.T) {
	base := testenv.S3(t)
	prefixed := newStore(t, base+"&prefix=tenant-a")
	plain := newStore(t, base)
	ctx := context.Background()

	data := []byte("hello")
	if err := prefixed.Put(ctx, "rec/a.opus", bytes.NewReader(data), 5, "audio/opus"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if _, err := plain.Stat(ctx, "tenant-a/rec/a.opus"); err != nil {
		t.Errorf("Stat of the prefixed key through a store without prefix: %v", err)
	}
	infos, err := prefixed.List(ctx, "rec/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(infos) != 1 || infos[0].Key != "rec/a.opus" {
		t.Errorf("List(rec/) = %+v, want one object rec/a.opus", infos)
	}

	u, err := prefixed.PresignGet(ctx, "rec/a.opus", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	resp, err := http.Get(u.URL)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read GET body: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Errorf("GET = %d %q, want 200 %q", resp.StatusCode, got, data)
	}
}

func TestCreateBucketIfMissing(t *testing.T) {
	base, err := url.Parse(testenv.S3(t))
	if err != nil {
		t.Fatalf("parse storage URL: %v", err)
	}
	base.Host += "-new"
	s := newStore(t, base.String())
	ctx := context.Background()

	if _, err := s.List(ctx, ""); err == nil {
		t.Fatalf("List on bucket %s before it was created: no error", s.Bucket())
	}
	if err := s.CreateBucketIfMissing(ctx); err != nil {
		t.Fatalf("CreateBucketIfMissing: %v", err)
	}
	if err := s.CreateBucketIfMissing(ctx); err != nil {
		t.Errorf("CreateBucketIfMissing on an existing bucket: %v", err)
	}
	infos, err := s.List(ctx, "")
	if err != nil {
		t.Errorf("List after creating the bucket: %v", err)
	}
	if len(infos) != 0 {
		t.Errorf("List of a new bucket returned %d objects", len(infos))
	}
}

func TestPutStreamsUnseekableReader(t *testing.T) {
	s := newStore(t, testenv.S3(t))
	ctx := context.Background()
	const size = 9<<20 + 5
	// io.LimitReader hides Seek, as an HTTP request body does.
	src := io.LimitReader(bytes.NewReader(bytes.Repeat([]byte("0123456789"), size/10+1)), size)
	if err := s.Put(ctx, "big/object", src, size, "application/octet-stream"); err != nil {
		t.Fatalf("Put of an unseekable reader: %v", err)
	}
	info, err := s.Stat(ctx, "big/object")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Size != size {
		t.Errorf("Stat Size = %d, want %d", info.Size, size)
	}
}
