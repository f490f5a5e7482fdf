package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/bench"
	"github.com/botaserver/bota/internal/simulate"
	"github.com/botaserver/bota/internal/testenv"
)

// clusterSecret is the --secret-key both nodes share, so that each node
// accepts the URLs and cursors the other signs.
const clusterSecret = "e2e-cluster-secret-key-0123456789abcdef"

// launchNode starts "bota serve" without waiting for it, so that several
// nodes start at the same moment. waitNode waits for it.
func launchNode(t *testing.T, dataDir, addr string, extra ...string) (*server, <-chan [2]string) {
	t.Helper()
	logPath := filepath.Join(dataDir, fmt.Sprintf("server-%d.log", time.Now().UnixNano()))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	args := append([]string{"serve", "--addr", addr, "--data-dir", dataDir, "--rate-limit=0",
		"--admin-token", adminToken, "--log-level", "info"}, extra...)
	cmd := exec.Command(botaBin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bota serve: %v", err)
	}
	s := &server{t: t, cmd: cmd, addr: addr, dataDir: dataDir, logPath: logPath, exited: make(chan struct{})}
	keys := make(chan [2]string, 1)
	go s.readStdout(stdout, keys)
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.kill)
	return s, keys
}

func waitNode(t *testing.T, s *server) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			t.Fatalf("bota serve on %s exited during start; log:\n%s", s.addr, s.log())
		default:
		}
		res, err := http.Get(s.URL() + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("bota serve on %s not ready after 60 s: %v; log:\n%s", s.addr, err, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// failover sends requests for a stopped node to the other node, as a
// load balancer in front of the cluster would.
type failover struct {
	next      http.RoundTripper
	from, to  string
	switched  atomic.Bool
	rerouted  atomic.Int64
	acksTotal atomic.Int64
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	if f.switched.Load() && req.URL.Host == f.from {
		req = req.Clone(req.Context())
		req.URL.Host = f.to
		req.Host = f.to
		f.rerouted.Add(1)
	}
	resp, err := f.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusOK && strings.HasSuffix(req.URL.Path, "/upload-complete") {
		f.acksTotal.Add(1)
	}
	return resp, err
}

// mintDevice registers a device bound to a new end user on the node at
// api and returns its id and device token.
func mintDevice(t *testing.T, api *apiClient, key, name string) (string, string) {
	t.Helper()
	user := api.must(t, http.StatusCreated, http.MethodPost, "/v1/end-users", key,
		map[string]any{"external_id": name})
	dev := api.must(t, http.StatusCreated, http.MethodPost, "/v1/devices", key,
		map[string]any{"serial_number": name, "model": "bota_pin"})
	bound := api.must(t, http.StatusOK, http.MethodPost, "/v1/devices/"+dev.str("id")+"/bind", key,
		map[string]any{"end_user_id": user.str("id")})
	return dev.str("id"), bound.str("device_token")
}

// TestTwoNodes runs two nodes on one PostgreSQL and one S3 bucket. They
// start together on an empty database, share device tokens and jobs, and
// when one is killed mid-run the other finishes its work.
func TestTwoNodes(t *testing.T) {
	skipShort(t)
	// StopAll is registered first so that it runs last, after the
	// database and bucket cleanups of this test.
	t.Cleanup(testenv.StopAll)
	devices, uploads, tokens := 8, 3, 50
	loadTime := 3 * time.Second
	if small() {
		devices, uploads, tokens = 4, 2, 20
		loadTime = time.Second
	}
	dbURL := testenv.PostgresURL(t)
	storageURL := testenv.S3(t)
	shared := []string{"--database-url", dbURL, "--storage-url", storageURL, "--secret-key", clusterSecret}

	addrA, addrB := freeAddr(t), freeAddr(t)
	nodeA, keysA := launchNode(t, t.TempDir(), addrA, shared...)
	nodeB, keysB := launchNode(t, t.TempDir(), addrB, shared...)
	waitNode(t, nodeA)
	waitNode(t, nodeB)

	// Each node creates a default project on an empty database and prints
	// its keys; with two nodes starting together, one or both may.
	var key string
	printed := 0
	for _, keys := range []<-chan [2]string{keysA, keysB} {
		select {
		case k := <-keys:
			printed++
			key = k[1]
		case <-time.After(2 * time.Second):
		}
	}
	if key == "" {
		t.Fatal("neither node printed a test key on first start")
	}
	if printed > 1 {
		t.Logf("both nodes created a default project on the empty database")
	}
	apiA := &apiClient{base: nodeA.URL(), http: &http.Client{Timeout: 30 * time.Second}}
	apiB := &apiClient{base: nodeB.URL(), http: &http.Client{Timeout: 30 * time.Second}}

	// A device token minted on A works on B.
	deviceID, token := mintDevice(t, apiA, key, "cross-node")
	hb := apiB.must(t, http.StatusOK, http.MethodPost, "/v1/devices/me/heartbeat", token,
		map[string]any{"battery_percent": 77})
	if hb.str("status") != "ok" {
		t.Errorf("heartbeat on node B: status %q, want ok; body %s", hb.str("status"), hb.Raw)
	}
	got := apiA.must(t, http.StatusOK, http.MethodGet, "/v1/devices/"+deviceID, key, nil)
	if battery, _ := got.Body["battery_percent"].(float64); battery != 77 {
		t.Errorf("node A reads battery_percent %v after a heartbeat on node B, want 77", got.Body["battery_percent"])
	}

	measureHeartbeatScaling(t, apiA, key, nodeA, nodeB, tokens, loadTime)

	// A fleet spread over both nodes uploads with transcription on; node
	// A is killed once 40% of the uploads are acknowledged.
	route := &failover{next: newTransport(), from: addrA, to: addrB}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	total := int64(devices * uploads)
	done := make(chan simResult, 1)
	go func() {
		s, err := simulate.Run(ctx, simulate.Config{
			URLs: []string{nodeA.URL(), nodeB.URL()}, APIKey: key, Devices: devices, Files: librivoxPaths(),
			UploadsPerDevice: uploads, Heartbeats: 1, Retries: 12, AttemptTimeout: 30 * time.Second,
			Client: &http.Client{Transport: route}, Prefix: "cluster",
		})
		done <- simResult{s, err}
	}()
	deadline := time.Now().Add(5 * time.Minute)
	for route.acksTotal.Load() < int64(0.4*float64(total)) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d uploads acknowledged after 5 minutes", route.acksTotal.Load(), total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	nodeA.kill()
	route.switched.Store(true)
	killedAt := time.Now()
	t.Logf("killed node A after %d of %d uploads", route.acksTotal.Load(), total)

	res := <-done
	if res.err != nil {
		t.Fatalf("simulate: %v", res.err)
	}
	s := res.summary
	t.Logf("fleet: %d of %d uploads, %d failed attempts, %d retries, %d requests rerouted to B, errors %v",
		s.UploadsOK, s.UploadsTotal, s.ErrorCount, s.Retries, route.rerouted.Load(), s.Errors)
	if s.UploadsOK == 0 {
		t.Fatalf("no upload acknowledged; failures: %+v", s.Failures)
	}
	// Uploads cut off by the kill may fail (see checkFleet); every
	// acknowledged one must be stored with its bytes.
	verifyAcks(t, apiB, key, s.Acknowledged, "uploaded", "processing", "completed")

	// Every acknowledged recording gets its transcript: jobs node A held
	// are rescued by B once A has missed its heartbeats for 30 s.
	waitTranscribed(t, apiB, key, s.Acknowledged, 3*time.Minute)
	t.Logf("all %d transcriptions completed %s after the kill", len(s.Acknowledged),
		time.Since(killedAt).Round(time.Second))
	ranA := strings.Count(readFile(t, nodeA.logPath), "TranscriptionCompleted")
	ranB := strings.Count(readFile(t, nodeB.logPath), "TranscriptionCompleted")
	t.Logf("transcriptions completed by node A: %d, by node B: %d", ranA, ranB)
	if ranB == 0 {
		t.Error("node B completed no transcription")
	}
	if ranA+ranB < len(s.Acknowledged) {
		t.Errorf("the nodes logged %d completed transcriptions for %d acknowledged uploads",
			ranA+ranB, len(s.Acknowledged))
	}
}

// measureHeartbeatScaling prints authenticated heartbeats per second at
// saturation on one node, then spread over both.
func measureHeartbeatScaling(t *testing.T, api *apiClient, key string, a, b *server, n int, d time.Duration) {
	t.Helper()
	tokens := make([]string, n)
	for i := range tokens {
		_, tokens[i] = mintDevice(t, api, key, fmt.Sprintf("load-%d", i))
	}
	const conns = 32
	client := bench.NewClient(conns)
	defer client.CloseIdleConnections()
	ctx := context.Background()
	one := bench.Saturate(ctx, client, conns, d, bench.HeartbeatRequests([]string{a.URL()}, tokens))
	two := bench.Saturate(ctx, client, conns, d, bench.HeartbeatRequests([]string{a.URL(), b.URL()}, tokens))
	for name, r := range map[string]bench.LoadResult{"one node": one, "two nodes": two} {
		if r.Errors > 0 {
			t.Errorf("heartbeats on %s: %d of %d failed; first: %s", name, r.Errors, r.Requests, r.FirstError)
		}
	}
	ratio := 0.0
	if one.Rate > 0 {
		ratio = two.Rate / one.Rate
	}
	// Both nodes, PostgreSQL and the load generator share this machine's
	// cores, so the ratio is a floor for nodes on their own machines.
	t.Logf("heartbeats/s at saturation: one node %.0f, two nodes %.0f (%.2f×), %d connections",
		one.Rate, two.Rate, ratio, conns)
	fmt.Printf("cluster: heartbeats/s one node %.0f, two nodes %.0f (%.2fx)\n", one.Rate, two.Rate, ratio)
}

// waitTranscribed waits until every acknowledged recording's
// transcription is completed.
func waitTranscribed(t *testing.T, api *apiClient, key string, acks []simulate.Ack, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	pending := map[string]string{}
	for _, a := range acks {
		pending[a.RecordingID] = "unknown"
	}
	for len(pending) > 0 {
		for id := range pending {
			rec, err := api.call(http.MethodGet, "/v1/recordings/"+id, key, nil)
			if err != nil {
				t.Fatalf("GET recording %s: %v", id, err)
			}
			status := rec.str("status")
			if status == "completed" {
				delete(pending, id)
				continue
			}
			if status == "failed" {
				t.Fatalf("recording %s: transcription failed: %s", id, rec.Raw)
			}
			pending[id] = status
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d recordings not transcribed after %s: %v", len(pending), limit, pending)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}
