package e2e

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

// uploadClip uploads data with a device token: create, upload-url, PUT,
// upload-complete. It returns the recording id.
func uploadClip(t *testing.T, api *apiClient, token, contentType string, data []byte) string {
	t.Helper()
	rec := api.must(t, http.StatusCreated, "POST", "/v1/recordings", token, map[string]any{})
	recID := rec.str("id")
	u := api.must(t, http.StatusOK, "POST", "/v1/recordings/"+recID+"/upload-url", token,
		map[string]any{"type": "audio", "content_type": contentType, "file_size_bytes": len(data)})
	status, err := putFile(api.http, u.str("upload_url"), headersOf(u), bytes.NewReader(data),
		int64(len(data)))
	if err != nil || status != http.StatusOK {
		t.Fatalf("PUT clip: status %d, err %v", status, err)
	}
	api.must(t, http.StatusOK, "POST", "/v1/recordings/"+recID+"/upload-complete", token,
		map[string]any{"content_sha256": sha256Hex(data)})
	return recID
}

// TestTranscriptionsSurviveKill kills the server with SIGKILL while it
// transcribes, restarts it on the same data dir and checks that every
// recording ends completed with exactly one completed transcription.
func TestTranscriptionsSurviveKill(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	// One recogniser at a time keeps transcriptions running long enough to
	// be cut off.
	flags := []string{"--speech-workers", "1", "--job-workers", "2"}
	first := startServer(t, dir, "", flags...)
	if first.TestKey == "" {
		t.Fatalf("no test key printed on the first start; log:\n%s", first.log())
	}
	key := first.TestKey
	api := &apiClient{base: first.URL(), http: &http.Client{Timeout: 30 * time.Second}}

	eu := api.must(t, http.StatusCreated, "POST", "/v1/end-users", key, map[string]any{})
	dev := api.must(t, http.StatusCreated, "POST", "/v1/devices", key,
		map[string]any{"serial_number": "SN-pipeline-kill"})
	bound := api.must(t, http.StatusOK, "POST", "/v1/devices/"+dev.str("id")+"/bind", key,
		map[string]any{"end_user_id": eu.str("id")})
	token := bound.str("device_token")

	const clips = 6
	var recIDs []string
	for n := range clips {
		data, contentType := speechFile(t, dir, n, false)
		recIDs = append(recIDs, uploadClip(t, api, token, contentType, data))
	}

	// Kill the server once a transcription runs.
	deadline := time.Now().Add(2 * time.Minute)
	killed := false
	for !killed && time.Now().Before(deadline) {
		for _, id := range recIDs {
			r := api.must(t, http.StatusOK, "GET", "/v1/recordings/"+id, key, nil)
			if r.str("status") == "processing" {
				first.kill()
				killed = true
				break
			}
		}
		if !killed {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !killed {
		t.Fatalf("no recording reached processing in 2 minutes; log:\n%s", first.log())
	}
	restarted := time.Now()
	second := startServer(t, dir, "", flags...)
	api.base = second.URL()
	states := map[string]int{}
	for _, id := range recIDs {
		r := api.must(t, http.StatusOK, "GET", "/v1/recordings/"+id, key, nil)
		states[r.str("status")]++
	}
	t.Logf("after the restart: recordings by status %v", states)

	deadline = time.Now().Add(3 * time.Minute)
	for _, id := range recIDs {
		var rec reply
		for {
			rec = api.must(t, http.StatusOK, "GET", "/v1/recordings/"+id, key, nil)
			s := rec.str("status")
			if s == "completed" || s == "failed" || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if rec.str("status") != "completed" {
			t.Errorf("recording %s: status %s after the restart, want completed; log:\n%s",
				id, rec.str("status"), second.log())
			continue
		}
		list := api.must(t, http.StatusOK, "GET", "/v1/transcriptions?recording_id="+id, key, nil)
		data, _ := list.Body["data"].([]any)
		if len(data) != 1 {
			t.Errorf("recording %s has %d transcriptions, want 1: %s", id, len(data), list.Raw)
			continue
		}
		tr, _ := data[0].(map[string]any)
		if tr["id"] != rec.str("transcription_id") || tr["status"] != "completed" {
			t.Errorf("recording %s: transcription %v status %v, recording points at %s",
				id, tr["id"], tr["status"], rec.str("transcription_id"))
		}
		if text, _ := tr["full_text"].(string); text == "" {
			t.Errorf("recording %s: completed transcription has empty full_text", id)
		}
	}
	t.Logf("all %d recordings completed %s after the restart", clips,
		time.Since(restarted).Round(time.Millisecond))
}
