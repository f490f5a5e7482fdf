package webhook_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/botaserver/bota/webhooksig"
)

// durabilityEndpoints is the number of endpoints every event goes to.
const durabilityEndpoints = 5

// botaServer is a `bota serve` process of the built binary.
type botaServer struct {
	t       *testing.T
	bin     string
	dataDir string
	addr    string
	logs    *os.File
	cmd     *exec.Cmd
	stdout  *lockedBuffer
}

// lockedBuffer is a bytes.Buffer that the process's output copier and the
// test may use at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (s *botaServer) start() {
	s.t.Helper()
	s.stdout = &lockedBuffer{}
	s.cmd = exec.Command(s.bin, "serve", "--addr", s.addr, "--data-dir", s.dataDir,
		"--webhook-allow-private", "--rate-limit", "0", "--log-level", "warn")
	s.cmd.Stdout = s.stdout
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start bota: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get("http://" + s.addr + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("bota did not become healthy in 30 s; see %s", s.logs.Name())
}

func (s *botaServer) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("kill bota: %v", err)
	}
	_ = s.cmd.Wait()
}

func (s *botaServer) stop() {
	if s.cmd == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// testKey returns the test key that the first start printed.
func (s *botaServer) testKey() string {
	s.t.Helper()
	sc := bufio.NewScanner(strings.NewReader(s.stdout.String()))
	for sc.Scan() {
		if key, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "test key: "); ok {
			return key
		}
	}
	s.t.Fatalf("no test key in bota's output: %q", s.stdout.String())
	return ""
}

// inbox counts the event ids each endpoint received with a valid
// signature.
type inbox struct {
	mu       sync.Mutex
	secrets  [durabilityEndpoints]string
	counts   [durabilityEndpoints]map[string]int
	invalid  atomic.Int64
	requests atomic.Int64
}

func (in *inbox) handler(w http.ResponseWriter, r *http.Request) {
	in.requests.Add(1)
	var n int
	if _, err := fmt.Sscanf(r.URL.Path, "/r%d", &n); err != nil || n < 0 || n >= durabilityEndpoints {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	in.mu.Lock()
	secret := in.secrets[n]
	in.mu.Unlock()
	var event struct{ ID string }
	if err := webhooksig.Verify(secret, r.Header, body, time.Now(), 0); err != nil ||
		json.Unmarshal(body, &event) != nil || event.ID != r.Header.Get(webhooksig.EventIDHeader) {
		in.invalid.Add(1)
		http.Error(w, "invalid delivery", http.StatusUnauthorized)
		return
	}
	in.mu.Lock()
	in.counts[n][event.ID]++
	in.mu.Unlock()
}

// missing returns how many of ids endpoint n has not received.
func (in *inbox) missing(n int, ids []string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	m := 0
	for _, id := range ids {
		if in.counts[n][id] == 0 {
			m++
		}
	}
	return m
}

// TestDeliveriesSurviveKills sends every event to five endpoints while the
// server is killed with SIGKILL and restarted twice, once while events are
// written and once half-way through the deliveries, and checks that each
// endpoint receives each event at least once. It logs the duplicates.
// BOTA_TEST_SMALL=1 uses 500 events instead of 10,000.
func TestDeliveriesSurviveKills(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	total := 10000
	if os.Getenv("BOTA_TEST_SMALL") == "1" {
		total = 500
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bota")
	build := exec.Command("go", "build", "-o", bin, "github.com/botaserver/bota/cmd/bota")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	logs, err := os.Create(filepath.Join(dir, "bota.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	srv := &botaServer{t: t, bin: bin, dataDir: filepath.Join(dir, "data"), addr: freeAddr(t), logs: logs}
	srv.start()
	t.Cleanup(srv.stop)
	key := srv.testKey()
	base := "http://" + srv.addr

	in := &inbox{}
	receiver := httptest.NewServer(http.HandlerFunc(in.handler))
	t.Cleanup(receiver.Close)
	client := &http.Client{Timeout: 30 * time.Second}
	for n := range durabilityEndpoints {
		in.counts[n] = map[string]int{}
		var ep struct{ ID, Secret string }
		status := callJSON(t, client, "POST", base+"/v1/webhook-endpoints", key,
			fmt.Sprintf(`{"url":%q,"events":["recording.created"]}`, fmt.Sprintf("%s/r%d", receiver.URL, n)), &ep)
		if status != http.StatusCreated {
			t.Fatalf("create endpoint: status %d", status)
		}
		in.mu.Lock()
		in.secrets[n] = ep.Secret
		in.mu.Unlock()
	}

	var user struct{ ID string }
	if status := callJSON(t, client, "POST", base+"/v1/end-users", key, `{}`, &user); status != 201 {
		t.Fatalf("create end user: status %d", status)
	}
	recording := fmt.Sprintf(`{"end_user_id":%q}`, user.ID)

	start := time.Now()
	var created, rejected atomic.Int64
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for range next {
				for {
					// A request cut off by a kill may have committed, so the
					// events are counted from the server's list at the end.
					status, err := tryJSON(client, "POST", base+"/v1/recordings", key, recording, nil)
					if err == nil && status == http.StatusCreated {
						created.Add(1)
						break
					}
					if err == nil && status < 500 {
						rejected.Add(1)
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	var restarts []time.Duration
	restart := func() {
		srv.kill()
		down := time.Now()
		srv.start()
		restarts = append(restarts, time.Since(down))
	}
	// The first kill lands while events are being written and fanned out,
	// the second while about half of the deliveries are done.
	for i := range total {
		if i == total/2 {
			restart()
		}
		next <- i
	}
	close(next)
	wg.Wait()
	generated := time.Since(start)
	if n := rejected.Load(); n > 0 {
		t.Fatalf("the server rejected %d recording creates", n)
	}

	half := int64(total * durabilityEndpoints / 2)
	for wait := time.Now().Add(10 * time.Minute); in.requests.Load() < half && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	restart()
	killedAt := in.requests.Load()

	ids := listEventIDs(t, client, base, key)
	if len(ids) < total {
		t.Fatalf("the server lists %d recording.created events, want at least %d", len(ids), total)
	}
	deadline := time.Now().Add(15 * time.Minute)
	for time.Now().Before(deadline) {
		left := 0
		for n := range durabilityEndpoints {
			left += in.missing(n, ids)
		}
		if left == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	delivered := time.Since(start)

	dupTotal := 0
	for n := range durabilityEndpoints {
		miss := in.missing(n, ids)
		if miss > 0 {
			t.Errorf("endpoint %d is missing %d of %d events", n, miss, len(ids))
		}
		dups := 0
		in.mu.Lock()
		for _, c := range in.counts[n] {
			dups += c - 1
		}
		in.mu.Unlock()
		dupTotal += dups
		t.Logf("endpoint %d: %d events received, %d duplicates", n, len(ids)-miss, dups)
	}
	if n := in.invalid.Load(); n > 0 {
		t.Errorf("%d deliveries failed signature or id checks", n)
	}
	t.Logf("events: %d (API calls answered 201: %d); endpoints: %d; kills: 2, the second "+
		"after %d requests (restart took %v)",
		len(ids), created.Load(), durabilityEndpoints, killedAt, restarts)
	t.Logf("generation took %v; every endpoint had every event after %v; "+
		"requests received: %d; duplicates: %d (%.2f%% of %d deliveries)",
		generated.Round(time.Millisecond), delivered.Round(time.Millisecond), in.requests.Load(),
		dupTotal, 100*float64(dupTotal)/float64(len(ids)*durabilityEndpoints),
		len(ids)*durabilityEndpoints)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// tryJSON sends a request with a JSON body and decodes the response into out
// when out is not nil.
func tryJSON(client *http.Client, method, url, key, body string, out any) (int, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return res.StatusCode, fmt.Errorf("decode %s: %w", raw, err)
		}
	}
	return res.StatusCode, nil
}

func callJSON(t *testing.T, client *http.Client, method, url, key, body string, out any) int {
	t.Helper()
	status, err := tryJSON(client, method, url, key, body, out)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return status
}

// listEventIDs pages through GET /v1/events with a cursor.
func listEventIDs(t *testing.T, client *http.Client, base, key string) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for {
		url := base + "/v1/events?type=recording.created&limit=100"
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		var page struct {
			Data       []struct{ ID string }
			HasMore    bool    `json:"has_more"`
			NextCursor *string `json:"next_cursor"`
		}
		if status := callJSON(t, client, "GET", url, key, "", &page); status != http.StatusOK {
			t.Fatalf("list events: status %d", status)
		}
		for _, e := range page.Data {
			ids = append(ids, e.ID)
		}
		if !page.HasMore || page.NextCursor == nil {
			return ids
		}
		cursor = *page.NextCursor
	}
}
