package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/faultproxy"
	"github.com/botaserver/bota/internal/simulate"
)

// librivoxPaths returns the five LibriVox clips (WAV, 96 to 230 KB).
func librivoxPaths() []string {
	paths := make([]string, len(librivoxClips))
	for i, clip := range librivoxClips {
		paths[i] = filepath.Join(librivoxDir, clip)
	}
	return paths
}

// ackTransport counts upload-complete requests that returned 200, so a
// test can act when a share of a fleet's uploads is done.
type ackTransport struct {
	next http.RoundTripper
	acks atomic.Int64
}

func (a *ackTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusOK && strings.HasSuffix(req.URL.Path, "/upload-complete") {
		a.acks.Add(1)
	}
	return resp, err
}

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}

// flakyTransport opens a new connection per request, as a device on a
// cellular link that keeps dropping does, so every PUT meets the proxy's
// cut odds afresh (with 10 or more PUTs at odds of one half, a run without
// any cut happens about once in a thousand runs).
func flakyTransport() *http.Transport {
	t := newTransport()
	t.DisableKeepAlives = true
	return t
}

// simResult is what a simulator run running in the background returns.
type simResult struct {
	summary *simulate.Summary
	err     error
}

func runFleet(ctx context.Context, cfg simulate.Config) <-chan simResult {
	done := make(chan simResult, 1)
	go func() {
		s, err := simulate.Run(ctx, cfg)
		done <- simResult{s, err}
	}()
	return done
}

// waitAcks waits until at least n uploads were acknowledged. It fails the
// test when the fleet finishes first, because the fault would then hit an
// idle server.
func waitAcks(t *testing.T, acks *ackTransport, n int64, done <-chan simResult, res *simResult) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for acks.acks.Load() < n {
		select {
		case r := <-done:
			*res = r
			t.Fatalf("the fleet finished with %d acknowledged uploads, before the %d the fault waits for; "+
				"give it more work", acks.acks.Load(), n)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d uploads acknowledged after 5 minutes", acks.acks.Load(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkFleet fails the test unless every upload of the run succeeded and
// every heartbeat eventually went through.
func checkFleet(t *testing.T, s *simulate.Summary, devices, uploads, heartbeats int) {
	t.Helper()
	// NOTE: a kill between committing a new media record and storing the
	// Idempotency-Key's response makes the retried upload-url create a
	// second media record. The first stays pending, so upload-complete
	// returns 425 upload_incomplete until its URL expires. Such uploads
	// are never acknowledged, so none is lost; they are counted apart
	// until the server stores the media and the response in one
	// transaction.
	stranded := 0
	for _, f := range s.Failures {
		if strings.Contains(f.Error, "complete: HTTP 425 upload_incomplete") {
			stranded++
		}
	}
	if stranded > 0 {
		t.Logf("%d uploads stranded by a second media record (425 upload_incomplete)", stranded)
	}
	if s.UploadsOK+stranded != devices*uploads {
		t.Errorf("%d of %d uploads acknowledged; first failures: %+v", s.UploadsOK, devices*uploads,
			s.Failures[:min(len(s.Failures), 5)])
	}
	if s.UploadsFailed != stranded {
		t.Errorf("%d uploads failed, %d of them stranded", s.UploadsFailed, stranded)
	}
	if s.DevicesReady != devices {
		t.Errorf("%d of %d devices finished their setup", s.DevicesReady, devices)
	}
	// Each device sends its heartbeats before the first upload and one
	// after each upload, failed or not. A device that did not recover
	// would miss some.
	if want := devices * (heartbeats + uploads); s.Heartbeats != want {
		t.Errorf("%d heartbeats succeeded, want %d (every device recovers on its own)", s.Heartbeats, want)
	}
	if len(s.Acknowledged) != s.UploadsOK {
		t.Errorf("summary lists %d acknowledged recordings for %d uploads", len(s.Acknowledged), s.UploadsOK)
	}
}

// verifyAcks checks every acknowledged recording on the server: its status
// is one of want, its content_sha256 is the file's, and its download has
// those bytes.
func verifyAcks(t *testing.T, api *apiClient, key string, acks []simulate.Ack, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, a := range acks {
		if seen[a.RecordingID] {
			t.Errorf("recording %s acknowledged twice", a.RecordingID)
			continue
		}
		seen[a.RecordingID] = true
		rec := api.must(t, http.StatusOK, http.MethodGet, "/v1/recordings/"+a.RecordingID, key, nil)
		if status := rec.str("status"); !contains(want, status) {
			t.Errorf("recording %s: status %q, want one of %v", a.RecordingID, status, want)
		}
		if got := rec.str("content_sha256"); got != a.SHA256 {
			t.Errorf("recording %s: content_sha256 %q, want %q", a.RecordingID, got, a.SHA256)
		}
		dl := api.must(t, http.StatusOK, http.MethodGet, "/v1/recordings/"+a.RecordingID+"/download-url", key, nil)
		sum, n, err := downloadSHA256(api.http, dl.str("download_url"))
		if err != nil {
			t.Errorf("recording %s: download: %v", a.RecordingID, err)
			continue
		}
		if sum != a.SHA256 || n != a.SizeBytes {
			t.Errorf("recording %s: download has %d bytes with sha256 %s, want %d bytes with %s",
				a.RecordingID, n, sum, a.SizeBytes, a.SHA256)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func downloadSHA256(client *http.Client, rawURL string) (string, int64, error) {
	if rawURL == "" {
		return "", 0, fmt.Errorf("no download_url")
	}
	resp, err := client.Get(rawURL)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("GET download URL: HTTP %d", resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// setAutoTranscription turns automatic transcription on or off for a
// project, so that upload tests do not spend the CPU on recognition.
func setAutoTranscription(t *testing.T, api *apiClient, key, projectID string, on bool) {
	t.Helper()
	api.must(t, http.StatusOK, http.MethodPut, "/v1/projects/"+projectID+"/config/processing", key,
		map[string]any{"auto_transcription": map[string]any{"enabled": on}})
}

// TestFleetSurvivesRestarts kills the server (SIGKILL) three times while a
// fleet uploads and restarts it on the same data dir and port. Every
// acknowledged upload must be stored with its bytes, and every device
// must finish its uploads and heartbeats by retrying on its own.
func TestFleetSurvivesRestarts(t *testing.T) {
	skipShort(t)
	devices, uploads, heartbeats := 50, 4, 2
	if small() {
		devices, uploads = 10, 3
	}
	dataDir := t.TempDir()
	addr := freeAddr(t)
	srv := startServer(t, dataDir, addr)
	if srv.TestKey == "" {
		t.Fatal("the first start printed no test key")
	}
	key := srv.TestKey
	api := &apiClient{base: srv.URL(), http: &http.Client{Timeout: 30 * time.Second}}
	setAutoTranscription(t, api, key, srv.ProjectID, false)

	acks := &ackTransport{next: newTransport()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	total := int64(devices * uploads)
	done := runFleet(ctx, simulate.Config{
		URLs: []string{srv.URL()}, APIKey: key, Devices: devices, Files: librivoxPaths(),
		UploadsPerDevice: uploads, Heartbeats: heartbeats, Retries: 12,
		AttemptTimeout: 30 * time.Second, Client: &http.Client{Transport: acks},
	})

	var res simResult
	for i, share := range []float64{0.15, 0.40, 0.65} {
		waitAcks(t, acks, int64(share*float64(total)), done, &res)
		srv.kill()
		t.Logf("kill %d after %d of %d uploads", i+1, acks.acks.Load(), total)
		srv = startServer(t, dataDir, addr)
	}
	lastRestart := time.Now()
	res = <-done
	if res.err != nil {
		t.Fatalf("simulate: %v", res.err)
	}
	s := res.summary
	t.Logf("fleet: %d uploads, %d heartbeats, %d failed attempts, %d retries, errors %v",
		s.UploadsOK, s.Heartbeats, s.ErrorCount, s.Retries, s.Errors)
	checkFleet(t, s, devices, uploads, heartbeats)
	if s.Retries == 0 {
		t.Error("no request was retried: the kills did not hit the fleet")
	}
	verifyAcks(t, api, key, s.Acknowledged, "uploaded")

	// Devices with uploads left at the last restart reported after it.
	list := api.must(t, http.StatusOK, http.MethodGet, "/v1/devices?limit=100", key, nil)
	data, _ := list.Body["data"].([]any)
	after := 0
	for _, item := range data {
		d, _ := item.(map[string]any)
		at, _ := d["last_heartbeat_at"].(string)
		if ts, err := time.Parse(time.RFC3339Nano, at); err == nil && ts.After(lastRestart) {
			after++
		}
	}
	if after == 0 {
		t.Errorf("no device sent a heartbeat after the last restart")
	}
	t.Logf("%d of %d devices sent a heartbeat after the last restart", after, len(data))
}

// TestFleetThroughFlakyLink runs a fleet through a proxy that adds
// latency, throttles each connection and cuts some mid-request. Every
// upload must still complete with its bytes.
func TestFleetThroughFlakyLink(t *testing.T) {
	skipShort(t)
	devices, uploads, heartbeats := 20, 3, 1
	if small() {
		devices, uploads = 5, 2
	}
	dataDir := t.TempDir()
	addr := freeAddr(t)
	proxy, err := faultproxy.Start(addr, faultproxy.Faults{
		Latency:        20 * time.Millisecond,
		Jitter:         20 * time.Millisecond,
		BytesPerSecond: 2 << 20,
		CutProbability: 0.5,
		// The clips are 96 to 230 KB, so every cut of a PUT's connection
		// lands inside its body, while the small JSON requests are rarely
		// cut.
		CutAfterMax: 64 << 10,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	// Signed upload URLs are built on the public URL, so the PUTs go
	// through the proxy too.
	srv := startServer(t, dataDir, addr, "--public-url", proxy.URL())
	key := srv.TestKey
	api := &apiClient{base: srv.URL(), http: &http.Client{Timeout: 30 * time.Second}}
	setAutoTranscription(t, api, key, srv.ProjectID, false)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res := <-runFleet(ctx, simulate.Config{
		URLs: []string{proxy.URL()}, APIKey: key, Devices: devices, Files: librivoxPaths(),
		UploadsPerDevice: uploads, Heartbeats: heartbeats, Retries: 20,
		AttemptTimeout: 30 * time.Second, Client: &http.Client{Transport: flakyTransport()},
	})
	if res.err != nil {
		t.Fatalf("simulate: %v", res.err)
	}
	s := res.summary
	st := proxy.Stats()
	t.Logf("fleet: %d uploads, %d failed attempts, %d retries, errors %v; proxy: %d connections, %d cut",
		s.UploadsOK, s.ErrorCount, s.Retries, s.Errors, st.Connections, st.Cuts)
	checkFleet(t, s, devices, uploads, heartbeats)
	if st.Cuts == 0 {
		t.Error("the proxy cut no connection: the test did not exercise cuts")
	}
	// Download URLs are built on the proxy too; check the bytes over a
	// clean link.
	proxy.SetFaults(faultproxy.Faults{})
	verifyAcks(t, api, key, s.Acknowledged, "uploaded")

	// The PUTs went through the proxy: it carried at least the bytes of
	// every acknowledged file.
	if st.BytesUp < s.Bytes {
		t.Errorf("proxy carried %d bytes to the server, less than the %d bytes acknowledged", st.BytesUp, s.Bytes)
	}
}
