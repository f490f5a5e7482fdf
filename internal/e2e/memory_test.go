package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// zeros is an endless reader of zero bytes that holds no buffer.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestUploadMemory PUTs a generated 1 GiB body (256 MiB with
// BOTA_TEST_SMALL=1) to a signed URL of a running server and reads the
// server's peak resident set (VmHWM) before and after. The local store
// streams through one fixed buffer, so the peak may grow by at most
// 64 MiB.
func TestUploadMemory(t *testing.T) {
	skipShort(t)
	size, label := int64(1)<<30, "1 GiB"
	if small() {
		size, label = 256<<20, "256 MiB"
	}
	dataDir := t.TempDir()
	srv := startServer(t, dataDir, "")
	api := &apiClient{base: srv.URL(), http: &http.Client{Timeout: 10 * time.Minute}}
	key := srv.TestKey
	eu := api.must(t, http.StatusCreated, "POST", "/v1/end-users", key, map[string]any{}).str("id")
	rec := api.must(t, http.StatusCreated, "POST", "/v1/recordings", key,
		map[string]any{"end_user_id": eu}).str("id")
	u := api.must(t, http.StatusOK, "POST", "/v1/recordings/"+rec+"/upload-url", key,
		map[string]any{"content_type": "audio/wav", "file_size_bytes": size})

	before := srv.peakRSS()
	start := time.Now()
	status, err := putFile(api.http, u.str("upload_url"), headersOf(u), io.LimitReader(zeros{}, size), size)
	if err != nil || status != http.StatusOK {
		t.Fatalf("PUT %s: status %d, err %v; log:\n%s", label, status, err, srv.log())
	}
	elapsed := time.Since(start)
	after := srv.peakRSS()

	growthMiB := (after - before) / 1024
	msg := fmt.Sprintf("upload %s: peak RSS +%d MiB (%d to %d MiB, %.1f s)", label, growthMiB,
		before/1024, after/1024, elapsed.Seconds())
	fmt.Println(msg)
	t.Log(msg)
	if growthMiB > 64 {
		t.Errorf("%s; want at most +64 MiB", msg)
	}

	key2 := strings.TrimPrefix(strings.SplitN(u.str("upload_url"), "?", 2)[0], srv.URL()+"/uploads/")
	info, err := os.Stat(filepath.Join(dataDir, "media", "objects", filepath.FromSlash(key2)))
	if err != nil {
		t.Fatalf("stored object: %v", err)
	}
	if info.Size() != size {
		t.Errorf("stored object has %d bytes, want %d", info.Size(), size)
	}
}
