package disk_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/blob"
)

func putURL(t *testing.T, url string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "audio/opus")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSealedKeyRejectsPut(t *testing.T) {
	srv := newServer(t, 1<<20)
	ctx := context.Background()
	key := "proj_a/rec_b/med_c/audio.opus"
	body := []byte("first version")
	signed, err := srv.store.PresignPut(ctx, key, blob.PutOptions{ContentType: "audio/opus",
		ContentLength: int64(len(body)), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if got := putURL(t, signed.URL, body); got != http.StatusOK {
		t.Fatalf("first PUT: status %d, want 200", got)
	}
	if got := putURL(t, signed.URL, body); got != http.StatusOK {
		t.Fatalf("repeated PUT before the seal: status %d, want 200", got)
	}

	if err := srv.store.Seal(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := putURL(t, signed.URL, []byte("other version")); got != http.StatusConflict {
		t.Errorf("PUT after the seal: status %d, want 409", got)
	}
	info, err := srv.store.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(body)) {
		t.Errorf("size after a rejected PUT = %d, want %d", info.Size, len(body))
	}
}

func TestDeletedKeyRejectsPut(t *testing.T) {
	srv := newServer(t, 1<<20)
	ctx := context.Background()
	key := "proj_a/rec_b/med_d/audio.opus"
	body := []byte("bytes")
	signed, err := srv.store.PresignPut(ctx, key, blob.PutOptions{ContentType: "audio/opus",
		ContentLength: int64(len(body)), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if got := putURL(t, signed.URL, body); got != http.StatusOK {
		t.Fatalf("PUT: status %d, want 200", got)
	}
	if err := srv.store.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := putURL(t, signed.URL, body); got != http.StatusConflict {
		t.Errorf("PUT after delete: status %d, want 409", got)
	}
	if _, err := srv.store.Stat(ctx, key); err == nil {
		t.Error("object exists again after a PUT to a deleted key")
	}
}

func TestPutReportsSHA256(t *testing.T) {
	srv := newServer(t, 1<<20)
	ctx := context.Background()
	key := "proj_a/rec_b/med_e/audio.opus"
	if err := srv.store.Put(ctx, key, bytes.NewReader([]byte("abc")), 3, "audio/opus"); err != nil {
		t.Fatal(err)
	}
	info, err := srv.store.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" // sha256("abc")
	if info.SHA256 != want {
		t.Errorf("SHA256 = %q, want %q", info.SHA256, want)
	}
}
