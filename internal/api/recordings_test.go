package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
	"github.com/botaserver/bota/internal/blob"
)

func TestRecordingDeviceTokenAccess(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		mine := env.NewBoundDevice()
		other := env.NewBoundDevice()
		f := speech(t, 4, "opus")

		recID := createRecording(env, mine.Token, map[string]any{
			"device_id": other.DeviceID, "end_user_id": other.EndUserID, "name": "standup"})
		got := env.Do("GET", "/v1/recordings/"+recID, env.TestKey, nil)
		env.ExpectStatus(got, http.StatusOK)
		if got.String("device_id") != mine.DeviceID || got.String("end_user_id") != mine.EndUserID {
			t.Errorf("device_id = %v, end_user_id = %v; want the token's %s, %s (body ids ignored)",
				got.Body["device_id"], got.Body["end_user_id"], mine.DeviceID, mine.EndUserID)
		}
		if got.String("status") != "pending" || got.String("source") != "device" {
			t.Errorf("status = %v, source = %v; want pending, device", got.Body["status"], got.Body["source"])
		}

		for _, req := range []struct{ method, path string }{
			{"GET", "/v1/recordings"},
			{"GET", "/v1/recordings/" + recID},
			{"PATCH", "/v1/recordings/" + recID},
			{"DELETE", "/v1/recordings/" + recID},
			{"GET", "/v1/recordings/" + recID + "/download-url"},
			{"POST", "/v1/recordings/" + recID + "/download-url"},
			{"POST", "/v1/recordings/" + recID + "/upload-token"},
		} {
			var body any
			if req.method == "PATCH" || req.method == "POST" {
				body = map[string]any{}
			}
			r := env.Do(req.method, req.path, mine.Token, body)
			env.ExpectError(r, http.StatusForbidden, "forbidden", "")
		}

		// Another device's recording does not exist for this token.
		theirs := createRecording(env, other.Token, nil)
		u := uploadURL(env, other.Token, theirs, map[string]any{
			"content_type": f.ContentType, "file_size_bytes": len(f.Data)})
		putOK(t, u, f.Data)
		for _, path := range []string{"/upload-url", "/upload-complete", "/finalize", "/chunk-url"} {
			body := map[string]any{}
			if path == "/finalize" {
				body["total_chunks"] = 1
			}
			r := env.Do("POST", "/v1/recordings/"+theirs+path, mine.Token, body)
			env.ExpectError(r, http.StatusNotFound, "not_found", "id")
		}
		r := env.Do("POST", "/v1/recordings/"+theirs+"/upload-complete", other.Token, map[string]any{})
		env.ExpectStatus(r, http.StatusOK)
	})
}

func TestRecordingUploadTokenAccess(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		eu := str(env.CreateEndUser(nil), "id")
		f := speech(t, 0, "opus")
		recID := createRecording(env, env.TestKey, map[string]any{"end_user_id": eu})
		otherID := createRecording(env, env.TestKey, map[string]any{"end_user_id": eu})

		minted := env.Do("POST", "/v1/recordings/"+recID+"/upload-token", env.TestKey, nil)
		env.ExpectStatus(minted, http.StatusOK)
		if minted.String("object") != "upload_token" || minted.String("recording_id") != recID {
			t.Errorf("upload-token answer = %s", minted.Raw)
		}
		checkTime(t, "upload token expires_at", minted.Body["expires_at"], false)
		first := uploadURL(env, env.TestKey, otherID, map[string]any{
			"content_type": f.ContentType, "file_size_bytes": len(f.Data)})
		fromURL := first.String("upload_token")
		// The media of the minting call would otherwise hold up the
		// upload-complete below with 425.
		putOK(t, first, f.Data)

		for name, tc := range map[string]struct{ token, rec, other string }{
			"upload-token": {minted.String("upload_token"), recID, otherID},
			"upload-url":   {fromURL, otherID, recID},
		} {
			t.Run(name, func(t *testing.T) {
				env := env.For(t)
				if !strings.HasPrefix(tc.token, "up_") {
					t.Fatalf("upload token = %q, want up_...", tc.token)
				}
				for _, req := range []struct{ method, path string }{
					{"GET", "/v1/recordings"},
					{"GET", "/v1/recordings/" + tc.rec},
					{"POST", "/v1/recordings"},
					{"DELETE", "/v1/recordings/" + tc.rec},
					{"GET", "/v1/recordings/" + tc.rec + "/download-url"},
					{"POST", "/v1/recordings/" + tc.rec + "/upload-token"},
					{"GET", "/v1/devices"},
					{"GET", "/v1/end-users"},
				} {
					var body any
					if req.method == "POST" {
						body = map[string]any{"end_user_id": eu}
					}
					r := env.Do(req.method, req.path, tc.token, body)
					env.ExpectError(r, http.StatusForbidden, "forbidden", "")
				}
				for _, path := range []string{"/upload-url", "/upload-complete", "/finalize"} {
					body := map[string]any{"total_chunks": 1}
					if path != "/finalize" {
						body = map[string]any{}
					}
					r := env.Do("POST", "/v1/recordings/"+tc.other+path, tc.token, body)
					env.ExpectError(r, http.StatusNotFound, "not_found", "id")
				}

				u := uploadURL(env, tc.token, tc.rec, map[string]any{
					"content_type": f.ContentType, "file_size_bytes": len(f.Data)})
				if u.Body["upload_token"] != nil {
					t.Errorf("upload-url with an upload token: upload_token = %v, want null", u.Body["upload_token"])
				}
				putOK(t, u, f.Data)
				c := env.Do("POST", "/v1/recordings/"+tc.rec+"/upload-complete", tc.token,
					map[string]any{"content_sha256": sha256Hex(f.Data)})
				env.ExpectStatus(c, http.StatusOK)
				if c.String("status") != "uploaded" || c.String("source") != "api_upload" {
					t.Errorf("status = %v, source = %v; want uploaded, api_upload", c.Body["status"], c.Body["source"])
				}
				// finalize reaches the recording and refuses it as not streamed.
				r := env.Do("POST", "/v1/recordings/"+tc.rec+"/finalize", tc.token, map[string]any{"total_chunks": 1})
				env.ExpectError(r, http.StatusConflict, "conflict", "")
			})
		}
	})
}

func TestRecordingModeIsolation(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		dev := env.NewBoundDevice()
		f := speech(t, 1, "opus")
		recID := createRecording(env, dev.Token, nil)
		uploadSpeech(env, dev.Token, recID, f)

		for _, req := range []struct{ method, path string }{
			{"GET", "/v1/recordings/" + recID},
			{"PATCH", "/v1/recordings/" + recID},
			{"DELETE", "/v1/recordings/" + recID},
			{"POST", "/v1/recordings/" + recID + "/upload-url"},
			{"POST", "/v1/recordings/" + recID + "/upload-complete"},
			{"POST", "/v1/recordings/" + recID + "/upload-token"},
			{"GET", "/v1/recordings/" + recID + "/download-url"},
		} {
			var body any
			if req.method != "GET" && req.method != "DELETE" {
				body = map[string]any{}
			}
			r := env.Do(req.method, req.path, env.LiveKey, body)
			env.ExpectError(r, http.StatusNotFound, "not_found", "id")
		}
		list := env.Do("GET", "/v1/recordings", env.LiveKey, nil)
		env.ExpectStatus(list, http.StatusOK)
		if n := len(list.Data()); n != 0 {
			t.Errorf("live key lists %d recordings, want 0", n)
		}
		list = env.Do("GET", "/v1/recordings?device_id="+dev.DeviceID, env.TestKey, nil)
		env.ExpectStatus(list, http.StatusOK)
		if n := len(list.Data()); n != 1 {
			t.Fatalf("test key lists %d recordings of the device, want 1", n)
		}
		row := list.Data()[0]
		requireKeys(t, "listed recording", row, []string{"id", "project_id", "device_id", "end_user_id",
			"source", "status", "recorded_at", "duration_ms", "duration_seconds", "content_sha256",
			"content_sha256_verified_at", "media", "created_at", "deleted_at"})
		if row["deleted_at"] != nil || row["project_id"] != env.Project.ID {
			t.Errorf("listed recording deleted_at = %v, project_id = %v", row["deleted_at"], row["project_id"])
		}
	})
}

func TestRecordingDeleteRemovesMedia(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		dev := env.NewBoundDevice()
		f := speech(t, 2, "opus")
		recID := createRecording(env, dev.Token, nil)
		uploadSpeech(env, dev.Token, recID, f)
		media := mediaOf(env, recID)
		if len(media) != 1 {
			t.Fatalf("media records = %d, want 1", len(media))
		}
		ctx := context.Background()
		if _, err := env.Blob.Stat(ctx, media[0].StorageKey); err != nil {
			t.Fatalf("stat uploaded object: %v", err)
		}

		r := env.Do("DELETE", "/v1/recordings/"+recID, env.TestKey, nil)
		env.ExpectStatus(r, http.StatusNoContent)
		if _, err := env.Blob.Stat(ctx, media[0].StorageKey); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("stat after delete: err = %v, want blob.ErrNotFound", err)
		}
		if left := mediaOf(env, recID); len(left) != 0 {
			t.Errorf("media records after delete = %d, want 0", len(left))
		}
		r = env.Do("GET", "/v1/recordings/"+recID, env.TestKey, nil)
		env.ExpectError(r, http.StatusNotFound, "not_found", "id")
		if n := len(eventsOf(env, "recording.deleted", recID)); n != 1 {
			t.Errorf("recording.deleted events = %d, want 1", n)
		}
	})
}

// TestUploadWithoutDeclaredSize covers clients that leave file_size_bytes
// out of upload-url, which the API documents as optional.
func TestUploadWithoutDeclaredSize(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		dev := env.NewBoundDevice()
		f := speech(t, 3, "mp3")
		recID := createRecording(env, dev.Token, nil)
		u := uploadURL(env, dev.Token, recID, map[string]any{"content_type": f.ContentType})
		status, body := put(t, u.String("upload_url"), headersOf(u), f.Data)
		if status != http.StatusOK {
			t.Fatalf("PUT without a declared size: status %d, body %s", status, body)
		}
		c := env.Do("POST", "/v1/recordings/"+recID+"/upload-complete", dev.Token,
			map[string]any{"file_size_bytes": len(f.Data), "content_sha256": sha256Hex(f.Data)})
		env.ExpectStatus(c, http.StatusOK)
		checkUploaded(t, env, c.Body, recID, f)
	})
}

// Timestamps that do not parse and negative durations are 400 with the
// field's name in param.
func TestRecordingBodyValidation(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, env *apitest.Env) {
		dev := env.NewBoundDevice()
		for _, field := range []string{"recorded_at", "started_at", "ended_at"} {
			r := env.Do("POST", "/v1/recordings", dev.Token, map[string]any{field: "yesterday"})
			env.ExpectError(r, http.StatusBadRequest, "invalid_request", field)
			if msg, _ := r.Error()["message"].(string); !strings.Contains(msg, "RFC 3339") || strings.Contains(msg, "2006") {
				t.Errorf("%s: message %q, want the RFC 3339 form without Go's layout", field, msg)
			}
		}

		create := func(body map[string]any) string {
			r := env.Do("POST", "/v1/recordings", dev.Token, body)
			env.ExpectStatus(r, http.StatusCreated)
			return r.String("id")
		}
		recID := create(map[string]any{})
		r := env.Do("POST", "/v1/recordings/"+recID+"/upload-complete", dev.Token,
			map[string]any{"duration_seconds": -3})
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", "duration_seconds")

		stream := create(map[string]any{"streaming": true})
		r = env.Do("POST", "/v1/recordings/"+stream+"/finalize", dev.Token,
			map[string]any{"total_chunks": 1, "final_duration_ms": -1})
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", "final_duration_ms")
	})
}
