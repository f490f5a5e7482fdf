package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/apitest"
	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/store"
)

// librivoxDir holds five LibriVox clips, 16 kHz mono WAV, 3 to 7 seconds
// long (Debian package pocketsphinx-testdata).
const librivoxDir = "/usr/share/pocketsphinx/test/data/librivox"

var librivoxClips = []string{
	"sense_and_sensibility_01_austen_64kb-0870.wav",
	"sense_and_sensibility_01_austen_64kb-0880.wav",
	"sense_and_sensibility_01_austen_64kb-0890.wav",
	"sense_and_sensibility_01_austen_64kb-0920.wav",
	"sense_and_sensibility_01_austen_64kb-0930.wav",
}

// speechFile is a LibriVox clip encoded for upload.
type speechFile struct {
	Path        string
	ContentType string
	Data        []byte
	// SourceMs is ffprobe's duration of the WAV the file was encoded from.
	SourceMs float64
	// ProbeMs is ffprobe's duration of the encoded file.
	ProbeMs float64
}

// speech encodes clip n (0 to 4) as format "opus" (Ogg/Opus, libopus 32
// kb/s) or "mp3" (libmp3lame 32 kb/s) with ffmpeg.
func speech(t testing.TB, n int, format string) speechFile {
	t.Helper()
	src := filepath.Join(librivoxDir, librivoxClips[n%len(librivoxClips)])
	out := filepath.Join(t.TempDir(), fmt.Sprintf("clip%d.%s", n, format))
	var codec, ct string
	switch format {
	case "opus":
		codec, ct = "libopus", "audio/opus"
	case "mp3":
		codec, ct = "libmp3lame", "audio/mpeg"
	default:
		t.Fatalf("speech: unknown format %q", format)
	}
	ffmpeg(t, "-i", src, "-c:a", codec, "-b:a", "32k", out)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("read %s: %v", out, err)
	}
	return speechFile{Path: out, ContentType: ct, Data: data,
		SourceMs: ffprobeMs(t, src), ProbeMs: ffprobeMs(t, out)}
}

func ffmpeg(t testing.TB, args ...string) {
	t.Helper()
	full := append([]string{"-loglevel", "error", "-y"}, args...)
	if out, err := exec.Command("ffmpeg", full...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// ffprobeMs returns ffprobe's container duration of path in milliseconds.
func ffprobeMs(t testing.TB, path string) float64 {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration",
		"-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	sec, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe %s: duration %q: %v", path, out, err)
	}
	return sec * 1000
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// eachMediaEnv runs fn as a parallel subtest for every pair of database
// and blob back end, each with its own server.
func eachMediaEnv(t *testing.T, fn func(t *testing.T, env *apitest.BlobEnv), opts ...apitest.Option) {
	t.Helper()
	for _, b := range apitest.Backends(t) {
		for _, bb := range apitest.BlobBackends() {
			t.Run(b.Name+"/"+bb.Name, func(t *testing.T) {
				t.Parallel()
				fn(t, apitest.NewWithBlob(t, b, bb, opts...))
			})
		}
	}
}

// createRecording creates a recording with token and returns its id.
func createRecording(env *apitest.BlobEnv, token string, body map[string]any) string {
	env.T().Helper()
	if body == nil {
		body = map[string]any{}
	}
	r := env.Do("POST", "/v1/recordings", token, body)
	env.ExpectStatus(r, http.StatusCreated)
	return r.String("id")
}

// uploadURL asks for an upload URL and fails the test unless it gets one.
func uploadURL(env *apitest.BlobEnv, token, recID string, body map[string]any) *apitest.Response {
	env.T().Helper()
	r := env.Do("POST", "/v1/recordings/"+recID+"/upload-url", token, body)
	env.ExpectStatus(r, http.StatusOK)
	return r
}

// headersOf returns the headers object of an upload-url answer.
func headersOf(r *apitest.Response) map[string]string {
	out := map[string]string{}
	h, _ := r.Body["headers"].(map[string]any)
	for k, v := range h {
		s, _ := v.(string)
		out[k] = s
	}
	return out
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{
	Timeout: time.Minute,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// put sends data to a signed URL with headers and returns the status and
// body.
func put(t testing.TB, rawURL string, headers map[string]string, data []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, rawURL, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("new PUT %s: %v", rawURL, err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("PUT: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read PUT answer: %v", err)
	}
	return res.StatusCode, string(body)
}

// putOK sends data to the upload URL of an upload-url answer with its
// headers and fails the test unless storage accepts it.
func putOK(t testing.TB, r *apitest.Response, data []byte) {
	t.Helper()
	if status, body := put(t, r.String("upload_url"), headersOf(r), data); status != http.StatusOK {
		t.Fatalf("PUT to upload_url: status %d, body %s", status, body)
	}
}

// get fetches a URL without credentials.
func get(t testing.TB, rawURL string) (int, []byte, http.Header) {
	t.Helper()
	res, err := noRedirect.Get(rawURL)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read GET answer: %v", err)
	}
	return res.StatusCode, body, res.Header
}

// uploadSpeech runs the whole upload of f to recording recID with token:
// upload-url, PUT, upload-complete with content_sha256. It returns the
// upload-url and upload-complete answers.
func uploadSpeech(env *apitest.BlobEnv, token, recID string, f speechFile) (*apitest.Response, *apitest.Response) {
	env.T().Helper()
	u := uploadURL(env, token, recID, map[string]any{
		"type": "audio", "content_type": f.ContentType, "file_size_bytes": len(f.Data),
	})
	putOK(env.T(), u, f.Data)
	c := env.Do("POST", "/v1/recordings/"+recID+"/upload-complete", token,
		map[string]any{"content_sha256": sha256Hex(f.Data)})
	env.ExpectStatus(c, http.StatusOK)
	return u, c
}

// mediaOf returns the stored media records of a recording.
func mediaOf(env *apitest.BlobEnv, recID string) []*model.Media {
	env.T().Helper()
	media, err := env.Store.MediaOf(context.Background(), recID)
	if err != nil {
		env.T().Fatalf("media of %s: %v", recID, err)
	}
	return media
}

// testTenant is the test mode of the Env's project.
func testTenant(env *apitest.BlobEnv) model.Tenant {
	return model.Tenant{ProjectID: env.Project.ID, Mode: "test"}
}

// eventsOf returns the data of the stored events of type typ whose data.id
// is recID.
func eventsOf(env *apitest.BlobEnv, typ, recID string) []string {
	env.T().Helper()
	events, _, err := env.Store.Events(context.Background(), testTenant(env), &typ, time.Time{},
		store.Page{Limit: 100})
	if err != nil {
		env.T().Fatalf("list %s events: %v", typ, err)
	}
	var out []string
	for _, e := range events {
		if strings.Contains(string(e.Data), `"id":"`+recID+`"`) {
			out = append(out, string(e.Data))
		}
	}
	return out
}

func TestUploadDeviceFlow(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		dev := env.NewBoundDevice()
		for _, format := range []string{"opus", "mp3"} {
			t.Run(format, func(t *testing.T) {
				env := env.For(t)
				f := speech(t, 0, format)
				recID := createRecording(env, dev.Token, map[string]any{"upload_method": "wifi"})
				u, c := uploadSpeech(env, dev.Token, recID, f)

				if got := u.String("content_type"); got != f.ContentType {
					t.Errorf("upload-url content_type = %q, want %q", got, f.ContentType)
				}
				if u.Body["upload_token"] != nil {
					t.Errorf("upload-url with a device token: upload_token = %v, want null", u.Body["upload_token"])
				}
				checkUploaded(t, env, c.Body, recID, f)
				if c.String("device_id") != dev.DeviceID || c.String("source") != "device" {
					t.Errorf("device_id = %v, source = %v; want %s, device", c.Body["device_id"],
						c.Body["source"], dev.DeviceID)
				}

				again := env.Do("POST", "/v1/recordings/"+recID+"/upload-complete", dev.Token,
					map[string]any{"content_sha256": sha256Hex(f.Data)})
				env.ExpectStatus(again, http.StatusOK)
				if !bytes.Equal(again.Raw, c.Raw) {
					t.Errorf("repeated upload-complete body differs:\nfirst  %s\nsecond %s", c.Raw, again.Raw)
				}

				got := env.Do("GET", "/v1/recordings/"+recID, env.TestKey, nil)
				env.ExpectStatus(got, http.StatusOK)
				checkUploaded(t, env, got.Body, recID, f)

				checkDownload(t, env, recID, u.String("media_id"), f)

				if n := len(eventsOf(env, "recording.created", recID)); n != 1 {
					t.Errorf("recording.created events = %d, want 1", n)
				}
				uploaded := eventsOf(env, "recording.uploaded", recID)
				if len(uploaded) != 1 {
					t.Fatalf("recording.uploaded events = %d, want 1", len(uploaded))
				}
				if !strings.Contains(uploaded[0], `"status":"uploaded"`) {
					t.Errorf("recording.uploaded data = %s, want status uploaded", uploaded[0])
				}
			})
		}
	})
}

// checkUploaded checks a recording object after a successful upload of f.
func checkUploaded(t *testing.T, env *apitest.BlobEnv, rec map[string]any, recID string, f speechFile) {
	t.Helper()
	if rec["id"] != recID || rec["status"] != "uploaded" {
		t.Errorf("recording id = %v, status = %v; want %s, uploaded", rec["id"], rec["status"], recID)
	}
	if rec["content_sha256"] != sha256Hex(f.Data) {
		t.Errorf("content_sha256 = %v, want %s", rec["content_sha256"], sha256Hex(f.Data))
	}
	checkTime(t, "content_sha256_verified_at", rec["content_sha256_verified_at"], false)
	checkTime(t, "uploaded_at", rec["uploaded_at"], false)
	if rec["file_size_bytes"] != float64(len(f.Data)) || rec["mime_type"] != f.ContentType {
		t.Errorf("file_size_bytes = %v, mime_type = %v; want %d, %s", rec["file_size_bytes"],
			rec["mime_type"], len(f.Data), f.ContentType)
	}

	ms, ok := rec["duration_ms"].(float64)
	if !ok {
		t.Fatalf("duration_ms = %#v, want a number", rec["duration_ms"])
	}
	// ffprobe's container duration of an MP3 counts whole frames with the
	// encoder's padding (7.2 s for a 7.1 s clip at 16 kHz), while the
	// server decodes the samples, so MP3 is held to the source WAV's
	// duration.
	want := f.ProbeMs
	if f.ContentType == "audio/mpeg" {
		want = f.SourceMs
	}
	if math.Abs(ms-want) > 50 {
		t.Errorf("duration_ms = %v, want within 50 ms of %.1f", ms, want)
	}
	sec, ok := rec["duration_seconds"].(float64)
	if !ok || sec != math.Trunc(sec) {
		t.Errorf("duration_seconds = %#v, want an integer", rec["duration_seconds"])
	}
	if sec != math.Round(ms/1000) {
		t.Errorf("duration_seconds = %v, want duration_ms %v rounded", sec, ms)
	}
	media, _ := rec["media"].([]any)
	if len(media) != 1 {
		t.Fatalf("media = %v, want one entry", rec["media"])
	}
	m, _ := media[0].(map[string]any)
	if m["status"] != "uploaded" || m["sha256"] != sha256Hex(f.Data) || m["type"] != "audio" {
		t.Errorf("media = %v, want uploaded audio with the file's sha256", m)
	}
}

// checkDownload fetches the recording's download URL by GET without a
// media id and by POST with one, and compares the bytes with f.
func checkDownload(t *testing.T, env *apitest.BlobEnv, recID, mediaID string, f speechFile) {
	t.Helper()
	byGet := env.Do("GET", "/v1/recordings/"+recID+"/download-url", env.TestKey, nil)
	byPost := env.Do("POST", "/v1/recordings/"+recID+"/download-url", env.TestKey,
		map[string]any{"media_id": mediaID})
	for name, r := range map[string]*apitest.Response{"GET": byGet, "POST": byPost} {
		if r.Status != http.StatusOK {
			t.Errorf("%s download-url: status %d, body %s", name, r.Status, r.Raw)
			continue
		}
		requireKeys(t, name+" download-url", r.Body, []string{"download_url", "expires_in",
			"expires_at", "media_id", "content_type", "file_size_bytes"})
		if r.Body["expires_in"] != float64(3600) || r.String("media_id") != mediaID {
			t.Errorf("%s download-url expires_in = %v, media_id = %v; want 3600, %s", name,
				r.Body["expires_in"], r.Body["media_id"], mediaID)
		}
		if r.String("content_type") != f.ContentType || r.Body["file_size_bytes"] != float64(len(f.Data)) {
			t.Errorf("%s download-url content_type = %v, file_size_bytes = %v", name,
				r.Body["content_type"], r.Body["file_size_bytes"])
		}
		status, data, header := get(t, r.String("download_url"))
		if status != http.StatusOK {
			t.Errorf("%s download: status %d, body %s", name, status, data)
			continue
		}
		if !bytes.Equal(data, f.Data) {
			t.Errorf("%s download: %d bytes (sha256 %s), want the %d uploaded bytes", name,
				len(data), sha256Hex(data), len(f.Data))
		}
		if cl := header.Get("Content-Length"); cl != strconv.Itoa(len(f.Data)) {
			t.Errorf("%s download: Content-Length %q, want %d", name, cl, len(f.Data))
		}
	}
}

func TestUploadCompleteStates(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		dev := env.NewBoundDevice()
		f := speech(t, 1, "opus")
		path := func(id string) string { return "/v1/recordings/" + id + "/upload-complete" }

		t.Run("no media", func(t *testing.T) {
			env := env.For(t)
			recID := createRecording(env, dev.Token, nil)
			r := env.Do("POST", path(recID), dev.Token, map[string]any{})
			env.ExpectError(r, http.StatusBadRequest, "invalid_request", "media")
		})

		t.Run("before PUT", func(t *testing.T) {
			env := env.For(t)
			recID := createRecording(env, dev.Token, nil)
			u := uploadURL(env, dev.Token, recID, map[string]any{
				"content_type": f.ContentType, "file_size_bytes": len(f.Data)})
			r := env.Do("POST", path(recID), dev.Token, map[string]any{"content_sha256": sha256Hex(f.Data)})
			env.ExpectError(r, 425, "upload_incomplete", "media")
			if ra := r.Header.Get("Retry-After"); ra == "" {
				t.Errorf("425 without Retry-After")
			}
			putOK(t, u, f.Data)
			r = env.Do("POST", path(recID), dev.Token, map[string]any{"content_sha256": sha256Hex(f.Data)})
			env.ExpectStatus(r, http.StatusOK)
		})

		t.Run("size mismatch", func(t *testing.T) {
			env := env.For(t)
			recID := createRecording(env, dev.Token, nil)
			u := uploadURL(env, dev.Token, recID, map[string]any{
				"content_type": f.ContentType, "file_size_bytes": len(f.Data)})
			putOK(t, u, f.Data)
			// Replace the object with a shorter one from the server side.
			key := mediaOf(env, recID)[0].StorageKey
			short := f.Data[:len(f.Data)-10]
			if err := env.Blob.Put(context.Background(), key, bytes.NewReader(short), int64(len(short)),
				f.ContentType); err != nil {
				t.Fatalf("put short object: %v", err)
			}
			r := env.Do("POST", path(recID), dev.Token, map[string]any{})
			env.ExpectError(r, http.StatusBadRequest, "size_mismatch", "file_size_bytes")
		})

		t.Run("declared size against a signed one", func(t *testing.T) {
			env := env.For(t)
			recID := createRecording(env, dev.Token, nil)
			u := uploadURL(env, dev.Token, recID, map[string]any{
				"content_type": f.ContentType, "file_size_bytes": len(f.Data)})
			putOK(t, u, f.Data)
			r := env.Do("POST", path(recID), dev.Token, map[string]any{"file_size_bytes": 5})
			env.ExpectError(r, http.StatusBadRequest, "size_mismatch", "file_size_bytes")
			r = env.Do("POST", path(recID), dev.Token, map[string]any{"file_size_bytes": len(f.Data)})
			env.ExpectStatus(r, http.StatusOK)
		})

		t.Run("checksum mismatch and recovery", func(t *testing.T) {
			env := env.For(t)
			recID := createRecording(env, dev.Token, nil)
			u := uploadURL(env, dev.Token, recID, map[string]any{
				"content_type": f.ContentType, "file_size_bytes": len(f.Data)})
			corrupt := bytes.Clone(f.Data)
			corrupt[len(corrupt)/2] ^= 0xff
			putOK(t, u, corrupt)
			r := env.Do("POST", path(recID), dev.Token, map[string]any{"content_sha256": sha256Hex(f.Data)})
			env.ExpectError(r, http.StatusBadRequest, "checksum_mismatch", "content_sha256")

			got := env.Do("GET", "/v1/recordings/"+recID, env.TestKey, nil)
			if got.String("status") != "integrity_failure" {
				t.Errorf("status after checksum_mismatch = %v, want integrity_failure", got.Body["status"])
			}
			if n := len(eventsOf(env, "recording.uploaded", recID)); n != 0 {
				t.Errorf("recording.uploaded events after checksum_mismatch = %d, want 0", n)
			}

			u2 := uploadURL(env, dev.Token, recID, map[string]any{
				"content_type": f.ContentType, "file_size_bytes": len(f.Data)})
			putOK(t, u2, f.Data)
			r = env.Do("POST", path(recID), dev.Token, map[string]any{"content_sha256": sha256Hex(f.Data)})
			if r.Status != http.StatusOK {
				t.Fatalf("complete after a corrected upload: status %d, body %s", r.Status, r.Raw)
			}
			if r.String("status") != "uploaded" || r.String("content_sha256") != sha256Hex(f.Data) {
				t.Errorf("recovered recording status = %v, content_sha256 = %v", r.Body["status"],
					r.Body["content_sha256"])
			}
			checkDownload(t, env, recID, u2.String("media_id"), f)
		})
	})
}

func TestUploadURLShapes(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		f := speech(t, 2, "mp3")
		eu := str(env.CreateEndUser(nil), "id")
		newRec := func(env *apitest.BlobEnv) string {
			return createRecording(env, env.TestKey, map[string]any{"end_user_id": eu, "source": "api_upload"})
		}

		t.Run("content_type only", func(t *testing.T) {
			env := env.For(t)
			recID := newRec(env)
			u := uploadURL(env, env.TestKey, recID, map[string]any{
				"content_type": "audio/mp3", "file_size_bytes": len(f.Data)})
			if u.String("type") != "audio" || u.String("content_type") != "audio/mpeg" {
				t.Errorf("type = %v, content_type = %v; want audio, audio/mpeg", u.Body["type"], u.Body["content_type"])
			}
			if !strings.HasPrefix(u.String("upload_token"), "up_") {
				t.Errorf("upload-url with a key: upload_token = %v, want up_...", u.Body["upload_token"])
			}
			putOK(t, u, f.Data)
			c := env.Do("POST", "/v1/recordings/"+recID+"/upload-complete", env.TestKey,
				map[string]any{"sha256": sha256Hex(f.Data)})
			env.ExpectStatus(c, http.StatusOK)
			checkUploaded(t, env, c.Body, recID, f)
		})

		t.Run("image", func(t *testing.T) {
			env := env.For(t)
			img := filepath.Join(t.TempDir(), "frame.png")
			ffmpeg(t, "-f", "lavfi", "-i", "testsrc=size=64x48:rate=1", "-frames:v", "1", img)
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			recID := newRec(env)
			audio := uploadURL(env, env.TestKey, recID, map[string]any{
				"type": "audio", "content_type": f.ContentType, "file_size_bytes": len(f.Data)})
			putOK(t, audio, f.Data)
			u := uploadURL(env, env.TestKey, recID, map[string]any{
				"type": "image", "file_size_bytes": len(data), "captured_at": "2026-01-15T09:05:30Z"})
			if u.String("content_type") != "image/jpeg" {
				t.Errorf("image default content_type = %v, want image/jpeg", u.Body["content_type"])
			}
			u = uploadURL(env, env.TestKey, recID, map[string]any{
				"type": "image", "content_type": "image/png", "file_size_bytes": len(data)})
			putOK(t, u, data)
			// The image/jpeg media never received a PUT and still blocks.
			c := env.Do("POST", "/v1/recordings/"+recID+"/upload-complete", env.TestKey, map[string]any{})
			env.ExpectError(c, 425, "upload_incomplete", "media")

			recID = newRec(env)
			audio = uploadURL(env, env.TestKey, recID, map[string]any{
				"type": "audio", "content_type": f.ContentType, "file_size_bytes": len(f.Data)})
			putOK(t, audio, f.Data)
			u = uploadURL(env, env.TestKey, recID, map[string]any{
				"type": "image", "content_type": "image/png", "file_size_bytes": len(data)})
			putOK(t, u, data)
			c = env.Do("POST", "/v1/recordings/"+recID+"/upload-complete", env.TestKey,
				map[string]any{"content_sha256": sha256Hex(f.Data)})
			env.ExpectStatus(c, http.StatusOK)
			media, _ := c.Body["media"].([]any)
			if len(media) != 2 {
				t.Fatalf("media = %v, want audio and image", c.Body["media"])
			}
			img0, _ := media[1].(map[string]any)
			if img0["type"] != "image" || img0["status"] != "uploaded" || img0["sha256"] != sha256Hex(data) {
				t.Errorf("image media = %v", img0)
			}
			dl := env.Do("POST", "/v1/recordings/"+recID+"/download-url", env.TestKey,
				map[string]any{"media_id": u.String("media_id")})
			env.ExpectStatus(dl, http.StatusOK)
			if _, got, _ := get(t, dl.String("download_url")); !bytes.Equal(got, data) {
				t.Errorf("image download differs from the upload")
			}
		})

		t.Run("refused bodies", func(t *testing.T) {
			env := env.For(t)
			recID := newRec(env)
			path := "/v1/recordings/" + recID + "/upload-url"
			cases := []struct {
				body   map[string]any
				status int
				code   string
				param  string
			}{
				{map[string]any{"content_type": "application/pdf"}, 400, "invalid_request", "content_type"},
				{map[string]any{"type": "audio", "content_type": "video/mp4"}, 400, "invalid_request", "content_type"},
				{map[string]any{"type": "image", "content_type": "image/gif"}, 400, "invalid_request", "content_type"},
				{map[string]any{"content_type": "not a type"}, 400, "invalid_request", "content_type"},
				{map[string]any{"type": "text"}, 400, "invalid_request", "type"},
				{map[string]any{"file_size_bytes": 0}, 400, "invalid_request", "file_size_bytes"},
				{map[string]any{"file_size_bytes": int64(3) << 30}, 413, "payload_too_large", "file_size_bytes"},
			}
			for _, c := range cases {
				r := env.Do("POST", path, env.TestKey, c.body)
				env.ExpectError(r, c.status, c.code, c.param)
			}
			if media := mediaOf(env, recID); len(media) != 0 {
				t.Errorf("refused upload-url requests created %d media records", len(media))
			}
		})
	})
}

func TestUploadTooLargeForConfig(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		eu := str(env.CreateEndUser(nil), "id")
		recID := createRecording(env, env.TestKey, map[string]any{"end_user_id": eu})
		r := env.Do("POST", "/v1/recordings/"+recID+"/upload-url", env.TestKey,
			map[string]any{"file_size_bytes": 1<<20 + 1})
		env.ExpectError(r, http.StatusRequestEntityTooLarge, "payload_too_large", "file_size_bytes")
		r = env.Do("POST", "/v1/recordings/"+recID+"/upload-url", env.TestKey,
			map[string]any{"file_size_bytes": 1 << 20})
		env.ExpectStatus(r, http.StatusOK)
	}, apitest.WithConfig(func(c *api.Config) { c.MaxFileSize = 1 << 20 }))
}

// mutateQuery returns rawURL with the query parameter name changed by fn.
func mutateQuery(t testing.TB, rawURL, name string, fn func(string) string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse %s: %v", rawURL, err)
	}
	q := u.Query()
	if !q.Has(name) {
		t.Fatalf("URL has no %s parameter: %s", name, rawURL)
	}
	q.Set(name, fn(q.Get(name)))
	u.RawQuery = q.Encode()
	return u.String()
}

// signatureParam is the name of the query parameter that carries the
// signature of a signed URL.
func signatureParam(env *apitest.BlobEnv) string {
	if env.BlobName == "s3" {
		return "X-Amz-Signature"
	}
	return "signature"
}

// flipFirst changes the first character of a signature. The last one
// would not do: the final base64 character of a 32-byte MAC carries two
// padding bits that a lenient decoder ignores.
func flipFirst(s string) string {
	if s == "" {
		return "x"
	}
	repl := "A"
	if s[0] == 'A' {
		repl = "B"
	}
	return repl + s[1:]
}

func TestSignedURLRefusals(t *testing.T) {
	eachMediaEnv(t, func(t *testing.T, env *apitest.BlobEnv) {
		dev := env.NewBoundDevice()
		f := speech(t, 3, "opus")
		body := map[string]any{"content_type": f.ContentType, "file_size_bytes": len(f.Data)}
		recA := createRecording(env, dev.Token, nil)
		recB := createRecording(env, dev.Token, nil)
		a := uploadURL(env, dev.Token, recA, body)
		b := uploadURL(env, dev.Token, recB, body)
		keyA := mediaOf(env, recA)[0].StorageKey
		keyB := mediaOf(env, recB)[0].StorageKey
		headers := headersOf(a)

		// refused checks that a PUT is rejected: 403 on the local store's
		// /uploads/ path, 4xx elsewhere, and that no object appeared.
		refused := func(t *testing.T, what, rawURL string, h map[string]string, data []byte, keys ...string) {
			t.Helper()
			status, resp := put(t, rawURL, h, data)
			switch {
			case env.BlobName == "disk" && strings.Contains(rawURL, "/uploads/") &&
				status != http.StatusForbidden:
				t.Errorf("%s: status %d, want 403; body %s", what, status, resp)
			case status < 400 || status >= 500:
				t.Errorf("%s: status %d, want a 4xx refusal; body %s", what, status, resp)
			}
			for _, key := range keys {
				if _, err := env.Blob.Stat(context.Background(), key); !errors.Is(err, blob.ErrNotFound) {
					t.Errorf("%s: object %s exists after a refused PUT (err %v)", what, key, err)
				}
			}
		}

		t.Run("tampered signature", func(t *testing.T) {
			u := mutateQuery(t, a.String("upload_url"), signatureParam(env), flipFirst)
			refused(t, "tampered signature", u, headers, f.Data, keyA)
		})
		t.Run("wrong content type", func(t *testing.T) {
			refused(t, "wrong content type", a.String("upload_url"),
				map[string]string{"Content-Type": "audio/wav"}, f.Data, keyA)
		})
		t.Run("wrong length", func(t *testing.T) {
			refused(t, "shorter body", a.String("upload_url"), headers, f.Data[:len(f.Data)-1], keyA)
			refused(t, "longer body", a.String("upload_url"), headers, append(bytes.Clone(f.Data), 0), keyA)
		})
		t.Run("other key", func(t *testing.T) {
			other := strings.Replace(a.String("upload_url"), keyA, keyB, 1)
			if other == a.String("upload_url") {
				t.Fatalf("upload_url %s does not contain its key %s", other, keyA)
			}
			refused(t, "PUT to another recording's key", other, headers, f.Data, keyB)
		})
		t.Run("path traversal", func(t *testing.T) {
			base := a.String("upload_url")
			evil := []string{
				strings.Replace(base, keyA, keyA+"/../../"+keyB, 1),
				strings.Replace(base, keyA, keyA+"/%2e%2e/%2e%2e/x", 1),
				strings.Replace(base, keyA, "../../../../tmp/bota-escape", 1),
			}
			if env.BlobName == "disk" {
				// S3 decodes %2F to '/', which names the signed key itself.
				evil = append(evil, strings.Replace(base, keyA, strings.ReplaceAll(keyA, "/", "%2F"), 1))
			}
			for _, u := range evil {
				status, resp := put(t, u, headers, f.Data)
				if status == http.StatusTemporaryRedirect || status == http.StatusMovedPermanently {
					// net/http's ServeMux answers a path with ".." by a
					// redirect to the cleaned path, where the signature
					// of another key is refused.
					loc, err := url.Parse(u)
					if err != nil {
						t.Fatal(err)
					}
					next, err := loc.Parse(redirectLocation(t, u, headers, f.Data))
					if err != nil {
						t.Fatal(err)
					}
					u = next.String()
					t.Logf("%d to %s (status %d body %s)", status, u, status, resp)
				}
				refused(t, "PUT to "+u, u, headers, f.Data, keyB)
			}
			if _, err := os.Stat("/tmp/bota-escape"); err == nil {
				t.Errorf("a PUT with ../ wrote /tmp/bota-escape")
			}
		})
		t.Run("expired", func(t *testing.T) {
			key := strings.Replace(keyA, "audio.opus", "expired.opus", 1)
			signed, err := env.Blob.PresignPut(context.Background(), key, blob.PutOptions{
				ContentType: f.ContentType, ContentLength: int64(len(f.Data)),
				Expires: time.Now().Add(time.Second)})
			if err != nil {
				t.Fatalf("presign: %v", err)
			}
			// Both stores count expiry in whole seconds.
			time.Sleep(3 * time.Second)
			refused(t, "expired URL", signed.URL, signed.Headers, f.Data, key)
		})

		// The untouched URL still works after all of the above.
		putOK(t, a, f.Data)
		putOK(t, b, f.Data)
	})
}

// redirectLocation sends the PUT again and returns its Location header.
func redirectLocation(t testing.TB, rawURL string, headers map[string]string, data []byte) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, rawURL, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.Header.Get("Location")
}
