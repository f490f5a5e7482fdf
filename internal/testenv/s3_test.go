package testenv_test

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/blob/s3"
	"github.com/botaserver/bota/internal/testenv"
)

func TestS3BucketsAreSeparate(t *testing.T) {
	first, second := testenv.S3(t), testenv.S3(t)
	u1, err := url.Parse(first)
	if err != nil {
		t.Fatalf("parse %q: %v", first, err)
	}
	u2, err := url.Parse(second)
	if err != nil {
		t.Fatalf("parse %q: %v", second, err)
	}
	if u1.Scheme != "s3" || u1.Host == "" {
		t.Errorf("URL %q is not s3://BUCKET", first)
	}
	if u1.Host == u2.Host {
		t.Errorf("two calls returned the same bucket %q", u1.Host)
	}
	endpoint := u1.Query().Get("endpoint")
	if !strings.HasPrefix(endpoint, "http://127.0.0.1:") {
		t.Errorf("endpoint %q is not on 127.0.0.1", endpoint)
	}
	if got := u2.Query().Get("endpoint"); got != endpoint {
		t.Errorf("second endpoint %q differs from the first %q", got, endpoint)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := s3.New(ctx, s3.Config{URL: first})
	if err != nil {
		t.Fatalf("s3.New: %v", err)
	}
	b, err := s3.New(ctx, s3.Config{URL: second})
	if err != nil {
		t.Fatalf("s3.New: %v", err)
	}
	if err := a.Put(ctx, "k", bytes.NewReader([]byte("abc")), 3, "text/plain"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if info, err := a.Stat(ctx, "k"); err != nil || info.Size != 3 {
		t.Errorf("Stat in the first bucket = %+v, %v; want size 3", info, err)
	}
	if _, err := b.Stat(ctx, "k"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat in the second bucket: error = %v, want blob.ErrNotFound", err)
	}
}

func TestS3SetsCredentials(t *testing.T) {
	testenv.S3(t)
	want := map[string]string{
		"AWS_ACCESS_KEY_ID":     testenv.S3AccessKey,
		"AWS_SECRET_ACCESS_KEY": testenv.S3SecretKey,
		"AWS_REGION":            testenv.S3Region,
	}
	for name, value := range want {
		if got := os.Getenv(name); got != value {
			t.Errorf("%s = %q, want %q", name, got, value)
		}
	}
}

func TestS3ParallelCalls(t *testing.T) {
	seen := make(chan string, 4)
	t.Run("group", func(t *testing.T) {
		for i := range 4 {
			t.Run(string(rune('a'+i)), func(t *testing.T) {
				t.Parallel()
				seen <- testenv.S3(t)
			})
		}
	})
	close(seen)
	buckets := map[string]bool{}
	for raw := range seen {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("parse %q: %v", raw, err)
		}
		buckets[u.Host] = true
	}
	if len(buckets) != 4 {
		t.Errorf("4 parallel calls gave %d distinct buckets", len(buckets))
	}
}
