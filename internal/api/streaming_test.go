package api_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
	"github.com/botaserver/bota/internal/blob"
)

// speechChunks cuts clip n into independent Ogg/Opus files of at most
// seconds each (ffmpeg -ss/-t on the WAV) and returns them in order with
// the WAV's duration in milliseconds.
func speechChunks(t testing.TB, n int, seconds float64) ([][]byte, float64) {
	t.Helper()
	src := filepath.Join(librivoxDir, librivoxClips[n%len(librivoxClips)])
	total := ffprobeMs(t, src)
	dir := t.TempDir()
	var chunks [][]byte
	for i := 0; float64(i)*seconds*1000 < total; i++ {
		out := filepath.Join(dir, fmt.Sprintf("chunk_%d.opus", i+1))
		ffmpeg(t, "-ss", strconv.FormatFloat(float64(i)*seconds, 'f', 3, 64),
			"-t", strconv.FormatFloat(seconds, 'f', 3, 64), "-i", src,
			"-c:a", "libopus", "-b:a", "32k", out)
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, data)
	}
	return chunks, total
}

func md5Hex(chunks [][]byte) string {
	h := md5.New()
	for _, c := range chunks {
		h.Write(c)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// putChunk uploads chunk number n of a streamed recording: straight to the
// template on the local store, or through a chunk-url request when the
// template points at the API (S3).
func putChunk(env *apitest.BlobEnv, token, recID, template string, headers map[string]string, n int, data []byte) {
	t := env.T()
	t.Helper()
	target := strings.Replace(template, "{chunk_number}", strconv.Itoa(n), 1)
	if strings.HasPrefix(template, env.URL+"/v1/") {
		r := env.Do("POST", "/v1/recordings/"+recID+"/chunk-url", token,
			map[string]any{"chunk_number": n})
		env.ExpectStatus(r, http.StatusOK)
		if r.Body["chunk_number"] != float64(n) || r.String("method") != "PUT" {
			t.Errorf("chunk-url answer = %s", r.Raw)
		}
		target, headers = r.String("upload_url"), headersOf(r)
	}
	if status, body := put(t, target, headers, data); status != http.StatusOK {
		t.Fatalf("PUT chunk %d: status %d, body %s", n, status, body)
	}
}

func TestStreamingUpload(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		dev := env.NewBoundDevice()
		chunks, sourceMs := speechChunks(t, 0, 2.5)
		if len(chunks) != 3 {
			t.Fatalf("cut %d chunks, want 3", len(chunks))
		}

		created := env.Do("POST", "/v1/recordings", dev.Token, map[string]any{"streaming": true})
		env.ExpectStatus(created, http.StatusCreated)
		recID := created.String("id")
		tmpl := created.String("chunk_upload_url")
		if created.String("status") != "streaming" || created.Body["streaming"] != true {
			t.Errorf("created status = %v, streaming = %v", created.Body["status"], created.Body["streaming"])
		}
		if !strings.Contains(tmpl, "{chunk_number}") {
			t.Fatalf("chunk_upload_url = %q, want a {chunk_number} placeholder", tmpl)
		}
		checkTime(t, "chunk_url_expires_at", created.Body["chunk_url_expires_at"], false)
		chunkHeaders := map[string]string{}
		if h, ok := created.Body["chunk_headers"].(map[string]any); ok {
			for k, v := range h {
				chunkHeaders[k], _ = v.(string)
			}
		}

		// upload-url and upload-complete belong to the other flow.
		r := env.Do("POST", "/v1/recordings/"+recID+"/upload-url", dev.Token, map[string]any{})
		env.ExpectError(r, http.StatusConflict, "conflict", "")
		r = env.Do("POST", "/v1/recordings/"+recID+"/upload-complete", dev.Token, map[string]any{})
		env.ExpectError(r, http.StatusConflict, "conflict", "")

		for i, c := range chunks {
			putChunk(env, dev.Token, recID, tmpl, chunkHeaders, i+1, c)
		}
		finalize := func(body map[string]any) *apitest.Response {
			return env.Do("POST", "/v1/recordings/"+recID+"/finalize", dev.Token, body)
		}
		sum := md5Hex(chunks)

		r = finalize(map[string]any{"total_chunks": 4, "checksum_md5": sum})
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", "total_chunks")
		r = finalize(map[string]any{"total_chunks": 2, "checksum_md5": sum})
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", "total_chunks")
		r = finalize(map[string]any{"total_chunks": 3, "checksum_md5": strings.Repeat("0", 32)})
		env.ExpectError(r, http.StatusBadRequest, "checksum_mismatch", "checksum_md5")
		r = finalize(map[string]any{"total_chunks": 3, "checksum_md5": "xyz"})
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", "checksum_md5")

		body := map[string]any{"total_chunks": 3, "checksum_md5": sum, "final_duration_ms": 9999}
		done := finalize(body)
		env.ExpectStatus(done, http.StatusOK)
		if done.String("id") != recID || done.String("status") != "uploaded" ||
			done.Body["chunks_received"] != float64(3) {
			t.Errorf("finalize answer = %s", done.Raw)
		}
		ms, _ := done.Body["duration_ms"].(float64)
		if math.Abs(ms-sourceMs) > 100 {
			t.Errorf("stitched duration_ms = %v, want within 100 ms of the source's %.1f", ms, sourceMs)
		}

		again := finalize(body)
		env.ExpectStatus(again, http.StatusOK)
		if string(again.Raw) != string(done.Raw) {
			t.Errorf("repeated finalize body differs:\nfirst  %s\nsecond %s", done.Raw, again.Raw)
		}
		r = finalize(map[string]any{"total_chunks": 3})
		env.ExpectError(r, http.StatusConflict, "conflict", "")
		r = env.Do("POST", "/v1/recordings/"+recID+"/upload-url", dev.Token, map[string]any{})
		env.ExpectError(r, http.StatusConflict, "conflict", "")

		rec := env.Do("GET", "/v1/recordings/"+recID, env.TestKey, nil)
		env.ExpectStatus(rec, http.StatusOK)
		if rec.String("status") != "uploaded" || rec.Body["duration_ms"] != done.Body["duration_ms"] {
			t.Errorf("recording after finalize = %s", rec.Raw)
		}
		checkTime(t, "content_sha256_verified_at", rec.Body["content_sha256_verified_at"], false)
		if n := len(eventsOf(env, "recording.uploaded", recID)); n != 1 {
			t.Errorf("recording.uploaded events = %d, want 1", n)
		}

		// The chunks are gone; the stitched audio downloads and decodes.
		ctx := context.Background()
		left, err := env.Blob.List(ctx, env.Project.ID+"/"+recID+"/chunks/")
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Errorf("%d chunks left in storage after finalize", len(left))
		}
		// A finalized stream takes no more chunks, through the template or
		// through chunk-url.
		if strings.HasPrefix(tmpl, env.URL+"/v1/") {
			r = env.Do("POST", "/v1/recordings/"+recID+"/chunk-url", dev.Token, map[string]any{"chunk_number": 4})
			env.ExpectError(r, http.StatusConflict, "conflict", "")
		} else if status, body := put(t, strings.Replace(tmpl, "{chunk_number}", "4", 1), chunkHeaders,
			chunks[0]); status != http.StatusConflict {
			t.Errorf("PUT chunk 4 after finalize: status %d, body %s; want 409", status, body)
		}
		dl := env.Do("GET", "/v1/recordings/"+recID+"/download-url", env.TestKey, nil)
		env.ExpectStatus(dl, http.StatusOK)
		status, data, _ := get(t, dl.String("download_url"))
		if status != http.StatusOK || len(data) == 0 {
			t.Fatalf("download stitched audio: status %d, %d bytes", status, len(data))
		}
		path := filepath.Join(t.TempDir(), "stitched.opus")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if got := ffprobeMs(t, path); math.Abs(got-sourceMs) > 100 {
			t.Errorf("downloaded stitched audio lasts %.1f ms, want within 100 ms of %.1f", got, sourceMs)
		}

		r = env.Do("DELETE", "/v1/recordings/"+recID, env.TestKey, nil)
		env.ExpectStatus(r, http.StatusNoContent)
		for _, m := range mediaOf(env, recID) {
			t.Errorf("media %s left after delete", m.ID)
		}
		left, err = env.Blob.List(ctx, env.Project.ID+"/"+recID+"/")
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Errorf("objects left after delete: %v", left)
		}
	})
}

func TestStreamingChunkRules(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		dev := env.NewBoundDevice()
		chunks, _ := speechChunks(t, 1, 3)
		created := env.Do("POST", "/v1/recordings", dev.Token, map[string]any{"streaming": true})
		env.ExpectStatus(created, http.StatusCreated)
		recID := created.String("id")

		// A fresh template without a chunk number.
		fresh := env.Do("POST", "/v1/recordings/"+recID+"/chunk-url", dev.Token, map[string]any{})
		env.ExpectStatus(fresh, http.StatusOK)
		if !strings.Contains(fresh.String("chunk_upload_url"), "{chunk_number}") {
			t.Errorf("fresh template = %s", fresh.Raw)
		}
		for _, n := range []any{0, -1, 100001, "one"} {
			r := env.Do("POST", "/v1/recordings/"+recID+"/chunk-url", dev.Token, map[string]any{"chunk_number": n})
			if r.Status != http.StatusBadRequest {
				t.Errorf("chunk_number %v: status %d, want 400; body %s", n, r.Status, r.Raw)
			}
		}

		// Chunks 1 and 3 without 2: finalize names the gap.
		tmpl := created.String("chunk_upload_url")
		headers := map[string]string{"Content-Type": "audio/opus"}
		putChunk(env, dev.Token, recID, tmpl, headers, 1, chunks[0])
		putChunk(env, dev.Token, recID, tmpl, headers, 3, chunks[0])
		r := env.Do("POST", "/v1/recordings/"+recID+"/finalize", dev.Token, map[string]any{"total_chunks": 3})
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", "total_chunks")
		if !strings.Contains(r.Error()["message"].(string), "2") {
			t.Errorf("finalize message does not name the missing chunk: %s", r.Raw)
		}

		if env.BlobName == "disk" {
			// The template's signature covers this recording's chunks only.
			other := env.Do("POST", "/v1/recordings", dev.Token, map[string]any{"streaming": true})
			env.ExpectStatus(other, http.StatusCreated)
			forged := strings.Replace(tmpl, recID, other.String("id"), 1)
			forged = strings.Replace(forged, "{chunk_number}", "1", 1)
			if status, body := put(t, forged, headers, chunks[0]); status != http.StatusForbidden {
				t.Errorf("PUT to another recording's chunk: status %d, want 403; body %s", status, body)
			}
			bad := strings.Replace(tmpl, "{chunk_number}", "1/../../x", 1)
			if status, _ := put(t, bad, headers, chunks[0]); status < 300 {
				t.Errorf("PUT to a chunk number with '/': status %d, want a refusal", status)
			}
		}

		r = env.Do("DELETE", "/v1/recordings/"+recID, env.TestKey, nil)
		env.ExpectStatus(r, http.StatusNoContent)
		for _, n := range []int{1, 3} {
			key := fmt.Sprintf("%s/%s/chunks/chunk_%d.opus", env.Project.ID, recID, n)
			if _, err := env.Blob.Stat(context.Background(), key); !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("chunk %d after delete: err = %v, want blob.ErrNotFound", n, err)
			}
		}
	})
}
