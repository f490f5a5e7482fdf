package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	fleet "github.com/botaserver/bota/internal/simulate"
)

// librivoxDir holds 16 kHz mono WAV clips from Debian's
// pocketsphinx-testdata package.
const librivoxDir = "/usr/share/pocketsphinx/test/data/librivox"

// botaServer is a "bota serve" process on a free loopback port.
type botaServer struct {
	binary string
	url    string
	key    string
}

// buildBota compiles this command into a temporary folder.
func buildBota(t *testing.T) string {
	t.Helper()
	binary := filepath.Join(t.TempDir(), "bota")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/bota: %v\n%s", err, out)
	}
	return binary
}

// startServer runs "bota serve" with SQLite in a temporary data dir and
// no rate limits, and reads the test key it prints on first start.
func startServer(t *testing.T, binary string, extra ...string) *botaServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()

	// Uploads queue transcriptions; a short shutdown timeout keeps the
	// test from waiting for them, and the queue is durable anyway.
	args := append([]string{"serve", "--addr", addr, "--data-dir", t.TempDir(), "--rate-limit=0",
		"--log-level", "warn", "--shutdown-timeout", "2s"}, extra...)
	cmd := exec.Command(binary, args...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("stdout pipe: %v", err)
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bota serve: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		stopping := time.Now()
		_ = cmd.Process.Signal(os.Interrupt)
		defer func() { t.Logf("bota serve stopped in %s", time.Since(stopping).Round(time.Millisecond)) }()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("bota serve log:\n%s", logs.String())
		}
	})

	keys := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if key, ok := strings.CutPrefix(strings.TrimSpace(scanner.Text()), "test key: "); ok {
				keys <- key
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	srv := &botaServer{binary: binary, url: "http://" + addr}
	select {
	case srv.key = <-keys:
	case <-exited:
		t.Fatalf("bota serve exited before printing its keys:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("bota serve printed no test key within 30 s:\n%s", logs.String())
	}
	if !strings.HasPrefix(srv.key, "sk_test_") {
		t.Fatalf("test key = %q, want an sk_test_ key", srv.key)
	}
	waitHealthy(t, srv.url)
	t.Logf("bota serve started in %s", time.Since(started).Round(time.Millisecond))
	return srv
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s/health did not return 200 within 30 s", base)
}

// opusClips converts n LibriVox clips to Opus in a new folder and returns
// the folder and each file's SHA-256 by name.
func opusClips(t *testing.T, n int) (string, map[string]string) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatalf("ffmpeg not on PATH (install Debian package ffmpeg): %v", err)
	}
	wavs, err := filepath.Glob(filepath.Join(librivoxDir, "*.wav"))
	if err != nil || len(wavs) < n {
		t.Fatalf("want %d WAV clips in %s (install Debian package pocketsphinx-testdata); found %d",
			n, librivoxDir, len(wavs))
	}
	dir := t.TempDir()
	sums := map[string]string{}
	for _, wav := range wavs[:n] {
		name := strings.TrimSuffix(filepath.Base(wav), ".wav") + ".opus"
		dst := filepath.Join(dir, name)
		out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", wav,
			"-c:a", "libopus", "-b:a", "32k", dst).CombinedOutput()
		if err != nil {
			t.Fatalf("ffmpeg %s: %v\n%s", wav, err, out)
		}
		raw, err := os.ReadFile(dst)
		if err != nil {
			t.Fatalf("read %s: %v", dst, err)
		}
		sum := sha256.Sum256(raw)
		sums[name] = hex.EncodeToString(sum[:])
	}
	return dir, sums
}

// listedRecording is the part of a listed recording the tests check.
type listedRecording struct {
	ID                      string  `json:"id"`
	Status                  string  `json:"status"`
	ContentSHA256           *string `json:"content_sha256"`
	ContentSHA256VerifiedAt *string `json:"content_sha256_verified_at"`
	DeviceID                *string `json:"device_id"`
}

// listRecordings pages through GET /v1/recordings and returns every
// recording by id.
func listRecordings(t *testing.T, base, key string) map[string]listedRecording {
	t.Helper()
	all := map[string]listedRecording{}
	cursor := ""
	for {
		address := base + "/v1/recordings?limit=100"
		if cursor != "" {
			address += "&cursor=" + cursor
		}
		req, err := http.NewRequest(http.MethodGet, address, nil)
		if err != nil {
			t.Fatalf("build list request: %v", err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /v1/recordings: %v", err)
		}
		var page struct {
			Data       []listedRecording `json:"data"`
			HasMore    bool              `json:"has_more"`
			NextCursor *string           `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("GET /v1/recordings: status %d, decode error %v", resp.StatusCode, err)
		}
		for _, r := range page.Data {
			all[r.ID] = r
		}
		if !page.HasMore || page.NextCursor == nil {
			return all
		}
		cursor = *page.NextCursor
	}
}

// uploadedStatuses are the statuses of a recording whose upload-complete
// succeeded: processing may already have moved it past uploaded.
var uploadedStatuses = map[string]bool{
	"uploaded": true, "processing": true, "completed": true, "failed": true,
}

// checkAcknowledged asserts that the server lists every acknowledged
// upload once, past pending, with the digest of the file sent.
func checkAcknowledged(t *testing.T, s *fleet.Summary, listed map[string]listedRecording,
	sums map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	for _, ack := range s.Acknowledged {
		if seen[ack.RecordingID] {
			t.Errorf("recording %s acknowledged twice", ack.RecordingID)
		}
		seen[ack.RecordingID] = true
		if want := sums[ack.File]; ack.SHA256 != want {
			t.Errorf("ack %s sha256 = %s, want %s (sha256 of %s)", ack.RecordingID, ack.SHA256, want, ack.File)
		}
		rec, ok := listed[ack.RecordingID]
		if !ok {
			t.Errorf("acknowledged recording %s is not in GET /v1/recordings", ack.RecordingID)
			continue
		}
		if !uploadedStatuses[rec.Status] {
			t.Errorf("recording %s status = %q, want uploaded or later", rec.ID, rec.Status)
		}
		if rec.ContentSHA256 == nil || *rec.ContentSHA256 != ack.SHA256 {
			t.Errorf("recording %s content_sha256 = %v, want %s", rec.ID, rec.ContentSHA256, ack.SHA256)
		}
		if rec.ContentSHA256VerifiedAt == nil {
			t.Errorf("recording %s content_sha256_verified_at is null", rec.ID)
		}
		if rec.DeviceID == nil || *rec.DeviceID != ack.DeviceID {
			t.Errorf("recording %s device_id = %v, want %s", rec.ID, rec.DeviceID, ack.DeviceID)
		}
	}
}

// TestSimulateAgainstServer builds bota once and runs the fleet against
// fresh servers.
func TestSimulateAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bota serve; skipped with -short")
	}
	start := time.Now()
	binary := buildBota(t)
	t.Logf("go build took %s", time.Since(start).Round(time.Millisecond))
	dir, sums := opusClips(t, 3)

	t.Run("fleet uploads", func(t *testing.T) { testFleetUploads(t, binary, dir, sums) })
	t.Run("lost responses", func(t *testing.T) { testLostResponses(t, binary, dir, sums) })
}

// testFleetUploads runs "bota simulate" with 20 devices and checks every
// upload on the server.
func testFleetUploads(t *testing.T, binary, dir string, sums map[string]string) {
	srv := startServer(t, binary)

	// Two spellings of one server exercise the URL list; the key comes from
	// the environment.
	urls := srv.url + "," + strings.Replace(srv.url, "127.0.0.1", "localhost", 1)
	cmd := exec.Command(binary, "simulate", "--url", urls, "--devices", "20", "--files", dir,
		"--refresh", "--json", "--timeout", "2m")
	cmd.Env = append(os.Environ(), "BOTA_API_KEY="+srv.key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bota simulate: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	var s fleet.Summary
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		t.Fatalf("decode summary: %v\n%s", err, stdout.String())
	}
	t.Logf("simulated run took %.1f s", s.DurationSeconds)

	if s.Devices != 20 || s.DevicesReady != 20 {
		t.Errorf("devices = %d (%d ready), want 20 (20 ready)", s.Devices, s.DevicesReady)
	}
	if s.ErrorCount != 0 || len(s.Errors) != 0 {
		t.Errorf("errors = %d %v, want none; failures: %v", s.ErrorCount, s.Errors, s.Failures)
	}
	if s.UploadsTotal != 60 || s.UploadsOK != 60 || s.UploadsFailed != 0 {
		t.Errorf("uploads = %d ok, %d failed of %d; want 60 ok of 60",
			s.UploadsOK, s.UploadsFailed, s.UploadsTotal)
	}
	if len(s.Acknowledged) != 60 {
		t.Errorf("acknowledged = %d recordings, want 60", len(s.Acknowledged))
	}
	// One heartbeat at start and one after each of 3 uploads, per device.
	if s.Heartbeats != 80 {
		t.Errorf("heartbeats = %d, want 80", s.Heartbeats)
	}
	for _, step := range []string{fleet.StepCreate, fleet.StepUploadURL, fleet.StepPut, fleet.StepComplete,
		fleet.StepEndToEnd} {
		if l := s.Latency[step]; l.Count != 60 || l.P50 <= 0 || l.Max < l.P99 || l.P99 < l.P50 {
			t.Errorf("latency[%s] = %+v, want 60 samples with 0 < p50 <= p99 <= max", step, l)
		}
	}
	if n := s.Latency[fleet.StepRefresh].Count; n != 20 {
		t.Errorf("token refreshes = %d, want 20", n)
	}
	var total int64
	for _, a := range s.Acknowledged {
		total += a.SizeBytes
	}
	if s.Bytes != total || total == 0 {
		t.Errorf("bytes = %d, want %d (sum of acknowledged sizes)", s.Bytes, total)
	}

	listed := listRecordings(t, srv.url, srv.key)
	if len(listed) != 60 {
		t.Errorf("GET /v1/recordings lists %d recordings, want 60", len(listed))
	}
	checkAcknowledged(t, &s, listed, sums)
}

func TestSimulateUsageErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.opus"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("sk_test_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"no url", []string{"--key", "k", "--files", dir}, nil},
		{"no key", []string{"--url", "http://127.0.0.1:1", "--files", dir}, nil},
		{"no files", []string{"--url", "http://127.0.0.1:1", "--key", "k"}, nil},
		{"empty folder", []string{"--url", "http://127.0.0.1:1", "--key", "k", "--files", t.TempDir()}, nil},
		{"bad url", []string{"--url", "ftp://x", "--key", "k", "--files", dir}, nil},
		{"zero devices", []string{"--url", "http://127.0.0.1:1", "--key", "k", "--files", dir,
			"--devices", "0"}, nil},
		{"bad prefix", []string{"--url", "http://127.0.0.1:1", "--key", "k", "--files", dir,
			"--prefix", "a b"}, nil},
		{"unknown flag", []string{"--nope"}, nil},
		{"missing key file", []string{"--url", "http://127.0.0.1:1", "--files", dir},
			map[string]string{"BOTA_API_KEY_FILE": filepath.Join(dir, "missing")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"simulate"}, tc.args...), &stdout, &stderr, getenv)
			if !errors.Is(err, errUsage) {
				t.Errorf("run = %v, want the usage error (exit status 2); stderr:\n%s", err, stderr.String())
			}
			if stderr.Len() == 0 {
				t.Errorf("stderr is empty, want a message")
			}
		})
	}
}

func TestSimulateKeyFromFile(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("sk_test_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"BOTA_API_KEY_FILE": keyFile}
	key, err := apiKey("", func(k string) string { return env[k] })
	if err != nil || key != "sk_test_fromfile" {
		t.Errorf("apiKey from file = %q, %v; want sk_test_fromfile", key, err)
	}
	env["BOTA_API_KEY"] = "sk_test_fromenv"
	if key, _ := apiKey("", func(k string) string { return env[k] }); key != "sk_test_fromenv" {
		t.Errorf("apiKey with BOTA_API_KEY set = %q, want sk_test_fromenv", key)
	}
	if key, _ := apiKey("sk_test_flag", func(k string) string { return env[k] }); key != "sk_test_flag" {
		t.Errorf("apiKey with --key set = %q, want sk_test_flag", key)
	}
}

// lossyProxy forwards every request to a server but drops the response
// the first time it sees each POST (by Idempotency-Key) and each PUT (by
// path), and returns 502 instead. The server has acted on the request, so
// the client's retry must be replayed, not run twice.
type lossyProxy struct {
	forward http.Handler
	mu      sync.Mutex
	seen    map[string]bool
	lost    int
}

func (p *lossyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Method + " " + r.URL.Path + " " + r.Header.Get("Idempotency-Key")
	p.mu.Lock()
	lose := (r.Method == http.MethodPost || r.Method == http.MethodPut) && !p.seen[id]
	p.seen[id] = true
	if lose {
		p.lost++
	}
	p.mu.Unlock()
	if !lose {
		p.forward.ServeHTTP(w, r)
		return
	}
	p.forward.ServeHTTP(httptest.NewRecorder(), r)
	http.Error(w, "response lost by the test proxy", http.StatusBadGateway)
}

// testLostResponses runs the fleet in-process through lossyProxy and
// checks that no retried request ran twice.
func testLostResponses(t *testing.T, binary, dir string, sums map[string]string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for the proxy: %v", err)
	}
	proxyURL := "http://" + ln.Addr().String()
	srv := startServer(t, binary, "--public-url", proxyURL)
	target, err := url.Parse(srv.url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &lossyProxy{forward: httputil.NewSingleHostReverseProxy(target), seen: map[string]bool{}}
	httpServer := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = httpServer.Serve(ln) }()
	t.Cleanup(func() { _ = httpServer.Close() })
	files, err := fleet.FindAudio(dir)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := fleet.Run(ctx, fleet.Config{URLs: []string{proxyURL}, APIKey: srv.key, Devices: 5,
		Files: files, Client: &http.Client{}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Per device: end user, register, bind, 4 heartbeats, and create,
	// upload-url, PUT and complete for each of 3 files.
	const lostPerDevice = 3 + 4 + 3*4
	if s.UploadsOK != 15 || s.UploadsFailed != 0 {
		t.Errorf("uploads = %d ok, %d failed; want 15 ok; failures: %v",
			s.UploadsOK, s.UploadsFailed, s.Failures)
	}
	if proxy.lost != 5*lostPerDevice {
		t.Errorf("proxy dropped %d responses, want %d", proxy.lost, 5*lostPerDevice)
	}
	if s.Errors["http_502"] != proxy.lost || s.ErrorCount != proxy.lost || s.Retries != proxy.lost {
		t.Errorf("errors = %v (%d), retries = %d; want %d of http_502, each retried once",
			s.Errors, s.ErrorCount, s.Retries, proxy.lost)
	}
	listed := listRecordings(t, srv.url, srv.key)
	if len(listed) != 15 {
		t.Errorf("server lists %d recordings, want 15: a retried create ran twice", len(listed))
	}
	checkAcknowledged(t, s, listed, sums)
}
