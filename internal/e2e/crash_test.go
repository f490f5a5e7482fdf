package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const librivoxDir = "/usr/share/pocketsphinx/test/data/librivox"

var librivoxClips = []string{
	"sense_and_sensibility_01_austen_64kb-0870.wav",
	"sense_and_sensibility_01_austen_64kb-0880.wav",
	"sense_and_sensibility_01_austen_64kb-0890.wav",
	"sense_and_sensibility_01_austen_64kb-0920.wav",
	"sense_and_sensibility_01_austen_64kb-0930.wav",
}

// speechFile returns clip n as Ogg/Opus (32 kb/s, 20 to 30 KB), or with
// big set as a WAV of the clip looped to about 5 MiB (165 s).
func speechFile(t *testing.T, dir string, n int, big bool) (data []byte, contentType string) {
	t.Helper()
	src := filepath.Join(librivoxDir, librivoxClips[n%len(librivoxClips)])
	out := filepath.Join(dir, fmt.Sprintf("client%d.opus", n))
	args := []string{"-loglevel", "error", "-y", "-i", src, "-c:a", "libopus", "-b:a", "32k", out}
	contentType = "audio/opus"
	if big {
		out = filepath.Join(dir, fmt.Sprintf("client%d.wav", n))
		args = []string{"-loglevel", "error", "-y", "-stream_loop", "-1", "-i", src, "-t", "165",
			"-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", out}
		contentType = "audio/wav"
	}
	if msg, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data, contentType
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// throttled passes bytes through at about rate bytes per second and,
// after the first half bytes, waits until hold is closed, so that a big
// upload is surely in flight when the server is killed.
type throttled struct {
	r    io.Reader
	rate int
	half int
	hold <-chan struct{}
	sent int
}

func (t *throttled) Read(p []byte) (int, error) {
	if t.sent >= t.half {
		<-t.hold
	}
	chunk := t.rate / 20
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := t.r.Read(p)
	t.sent += n
	time.Sleep(50 * time.Millisecond)
	return n, err
}

// crashClient is one device uploading one file.
type crashClient struct {
	n           int
	token       string
	data        []byte
	contentType string
	big         bool

	mu        sync.Mutex
	recID     string
	uploadURL string
	headers   map[string]string
	completed bool
	// stage is the last step that failed, for the test log.
	stage string
}

// upload runs create, upload-url, PUT and upload-complete until a step
// fails with a transport error. ready is called once the upload URL is
// known, and done once upload-complete returned 200. With a non-nil hold,
// a big file's PUT sends half its bytes slowly, then waits for hold to
// close.
func (c *crashClient) upload(api *apiClient, hold <-chan struct{}, ready, done func()) {
	fail := func(stage string, err error) {
		// A *url.Error would print the signed URL.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		c.mu.Lock()
		c.stage = fmt.Sprintf("%s: %v", stage, err)
		c.mu.Unlock()
	}
	if c.recID == "" {
		r, err := api.call("POST", "/v1/recordings", c.token, map[string]any{"upload_method": "wifi"})
		if err != nil || r.Status != http.StatusCreated {
			fail("create", fmt.Errorf("%v %d %s", err, r.Status, r.Raw))
			return
		}
		c.mu.Lock()
		c.recID = r.str("id")
		c.mu.Unlock()
	}
	if c.uploadURL == "" {
		r, err := api.call("POST", "/v1/recordings/"+c.recID+"/upload-url", c.token,
			map[string]any{"content_type": c.contentType, "file_size_bytes": len(c.data)})
		if err != nil || r.Status != http.StatusOK {
			fail("upload-url", fmt.Errorf("%v %d %s", err, r.Status, r.Raw))
			return
		}
		c.mu.Lock()
		c.uploadURL, c.headers = r.str("upload_url"), headersOf(r)
		c.mu.Unlock()
	}
	ready()

	var body io.Reader = bytes.NewReader(c.data)
	if hold != nil && c.big {
		body = &throttled{r: body, rate: 1 << 20, half: len(c.data) / 2, hold: hold}
	}
	status, err := putFile(api.http, c.uploadURL, c.headers, body, int64(len(c.data)))
	if err != nil {
		fail("PUT", err)
		return
	}
	if status != http.StatusOK {
		fail("PUT", fmt.Errorf("status %d", status))
		return
	}
	for range 20 {
		r, err := api.call("POST", "/v1/recordings/"+c.recID+"/upload-complete", c.token,
			map[string]any{"content_sha256": sha256Hex(c.data)})
		if err != nil {
			fail("upload-complete", err)
			return
		}
		if r.Status == 425 {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if r.Status != http.StatusOK || r.str("status") != "uploaded" ||
			r.str("content_sha256") != sha256Hex(c.data) {
			fail("upload-complete", fmt.Errorf("status %d body %s", r.Status, r.Raw))
			return
		}
		c.mu.Lock()
		c.completed = true
		c.mu.Unlock()
		done()
		return
	}
	fail("upload-complete", fmt.Errorf("still 425 after 20 tries"))
}

// Uploads survive a killed server whether it fsyncs media files or leaves
// them to the kernel's writeback (--disk-sync=false), because a killed
// process's written pages stay in the page cache.
func TestUploadsSurviveKill(t *testing.T) {
	skipShort(t)
	t.Run("disk-sync", func(t *testing.T) { uploadsSurviveKill(t) })
	t.Run("no-disk-sync", func(t *testing.T) { uploadsSurviveKill(t, "--disk-sync=false") })
}

func uploadsSurviveKill(t *testing.T, flags ...string) {
	clients := 20
	if small() {
		clients = 8
	}
	dataDir := t.TempDir()
	srv := startServer(t, dataDir, "", flags...)
	if srv.TestKey == "" || srv.ProjectID == "" {
		t.Fatalf("first start printed no project and test key; log:\n%s", srv.log())
	}
	api := &apiClient{base: srv.URL(), http: &http.Client{Timeout: 2 * time.Minute}}
	key := srv.TestKey
	api.must(t, http.StatusOK, "PATCH", "/v1/projects/"+srv.ProjectID+"/config/processing", key,
		map[string]any{"auto_transcription": map[string]any{"enabled": false}})
	eu := api.must(t, http.StatusCreated, "POST", "/v1/end-users", key, map[string]any{}).str("id")

	files := t.TempDir()
	var all []*crashClient
	smalls := 0
	for i := range clients {
		dev := api.must(t, http.StatusCreated, "POST", "/v1/devices", key,
			map[string]any{"serial_number": fmt.Sprintf("E2E-%03d", i)}).str("id")
		token := api.must(t, http.StatusOK, "POST", "/v1/devices/"+dev+"/bind", key,
			map[string]any{"end_user_id": eu}).str("device_token")
		c := &crashClient{n: i, token: token, big: i%3 == 0}
		c.data, c.contentType = speechFile(t, files, i, c.big)
		if !c.big {
			smalls++
		}
		all = append(all, c)
	}

	var ready, done counter
	var wg sync.WaitGroup
	hold := make(chan struct{})
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(hold) }) })
	for _, c := range all {
		wg.Go(func() { c.upload(api, hold, ready.add, done.add) })
	}
	// Kill once every client holds an upload URL and the small uploads
	// are through, while the big ones wait halfway through their PUT.
	deadline := time.Now().Add(60 * time.Second)
	for (ready.get() < clients || done.get() < smalls) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	srv.kill()
	release.Do(func() { close(hold) })
	wg.Wait()

	var finished, interrupted []*crashClient
	for _, c := range all {
		if c.completed {
			finished = append(finished, c)
		} else {
			interrupted = append(interrupted, c)
			t.Logf("client %d (%d bytes) interrupted at %s", c.n, len(c.data), c.stage)
		}
	}
	t.Logf("kill: %d uploads completed, %d interrupted", len(finished), len(interrupted))
	if len(interrupted) == 0 {
		t.Fatalf("every upload finished before the kill; nothing was in flight")
	}

	srv2 := startServer(t, dataDir, srv.addr, flags...)
	api.base = srv2.URL()

	for _, c := range finished {
		checkStored(t, api, key, c)
	}
	checkObjects(t, api, key, dataDir, all)

	// The interrupted clients retry with their upload URL, still valid
	// because the signing secret lives in the database.
	for _, c := range interrupted {
		c.stage = ""
		c.upload(api, nil, func() {}, func() {})
		if !c.completed {
			t.Errorf("client %d: retry failed at %s", c.n, c.stage)
			continue
		}
		checkStored(t, api, key, c)
	}
	checkObjects(t, api, key, dataDir, all)
}

// checkStored checks that c's recording is uploaded and downloads as the
// bytes c sent.
func checkStored(t *testing.T, api *apiClient, key string, c *crashClient) {
	t.Helper()
	rec := api.must(t, http.StatusOK, "GET", "/v1/recordings/"+c.recID, key, nil)
	if rec.str("status") != "uploaded" || rec.str("content_sha256") != sha256Hex(c.data) {
		t.Errorf("client %d: recording status %q, content_sha256 %q; want uploaded, %s",
			c.n, rec.str("status"), rec.str("content_sha256"), sha256Hex(c.data))
	}
	dl := api.must(t, http.StatusOK, "GET", "/v1/recordings/"+c.recID+"/download-url", key, nil)
	res, err := api.http.Get(dl.str("download_url"))
	if err != nil {
		t.Fatalf("client %d: download: %v", c.n, err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("client %d: download: %v", c.n, err)
	}
	if res.StatusCode != http.StatusOK || sha256Hex(got) != sha256Hex(c.data) {
		t.Errorf("client %d: download status %d, sha256 %s; want 200, %s", c.n, res.StatusCode,
			sha256Hex(got), sha256Hex(c.data))
	}
}

// checkObjects walks the local store's objects: each one must be the
// exact file of the client whose recording its key names, and belong to a
// media record that is uploaded with the same size and sha256, or pending.
func checkObjects(t *testing.T, api *apiClient, key, dataDir string, all []*crashClient) {
	t.Helper()
	byRec := map[string]*crashClient{}
	for _, c := range all {
		if c.recID != "" {
			byRec[c.recID] = c
		}
	}
	root := filepath.Join(dataDir, "media", "objects")
	objects := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		objects++
		rel, _ := filepath.Rel(root, path)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) != 4 {
			t.Errorf("object %s: key is not project/recording/media/name", rel)
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		c := byRec[parts[1]]
		if c == nil {
			t.Errorf("object %s: no client created recording %s", rel, parts[1])
			return nil
		}
		if sha256Hex(data) != sha256Hex(c.data) {
			t.Errorf("object %s: %d bytes with sha256 %s, want client %d's %d bytes", rel, len(data),
				sha256Hex(data), c.n, len(c.data))
		}
		rec := api.must(t, http.StatusOK, "GET", "/v1/recordings/"+parts[1], key, nil)
		media, _ := rec.Body["media"].([]any)
		for _, v := range media {
			m, _ := v.(map[string]any)
			if m["id"] != parts[2] {
				continue
			}
			switch m["status"] {
			case "uploaded":
				if m["sha256"] != sha256Hex(data) || m["file_size_bytes"] != float64(len(data)) {
					t.Errorf("object %s: media record %v does not match the bytes", rel, m)
				}
			case "pending":
			default:
				t.Errorf("object %s: media status %v", rel, m["status"])
			}
			return nil
		}
		t.Errorf("object %s: recording %s has no media %s", rel, parts[1], parts[2])
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	temps, _ := os.ReadDir(filepath.Join(dataDir, "media", "tmp"))
	t.Logf("%d objects checked; %d temp files left for the sweep", objects, len(temps))
}
