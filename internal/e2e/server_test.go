// Package e2e runs the built bota binary: uploads through a crash, and
// the memory an upload costs the server.
//
// The tests are skipped under -short. BOTA_TEST_SMALL=1 scales them down
// (fewer clients, a 256 MiB upload instead of 1 GiB).
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// botaBin is the binary TestMain builds.
var botaBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short")
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "bota-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	botaBin = filepath.Join(dir, "bota")
	build := exec.Command("go", "build", "-o", botaBin, "github.com/botaserver/bota/cmd/bota")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/bota: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// small reports whether BOTA_TEST_SMALL=1 asks for a scaled-down run.
func small() bool { return os.Getenv("BOTA_TEST_SMALL") == "1" }

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test; skipped under -short")
	}
}

const adminToken = "e2e-admin-token-0123456789abcdefghij"

// server is one running `bota serve`.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string
	dataDir string
	logPath string
	exited  chan struct{}
	// TestKey and ProjectID are printed on the first start only.
	TestKey   string
	ProjectID string
}

// startServer runs `bota serve` on addr ("" picks a free port) with its
// data in dataDir (SQLite and local storage) and waits until /health
// answers.
func startServer(t *testing.T, dataDir, addr string, extra ...string) *server {
	t.Helper()
	if addr == "" {
		addr = freeAddr(t)
	}
	logPath := filepath.Join(dataDir, fmt.Sprintf("server-%d.log", time.Now().UnixNano()))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()

	args := append([]string{"serve", "--addr", addr, "--data-dir", dataDir, "--rate-limit=0",
		"--admin-token", adminToken, "--log-level", "warn"}, extra...)
	cmd := exec.Command(botaBin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bota serve: %v", err)
	}
	s := &server{t: t, cmd: cmd, addr: addr, dataDir: dataDir, logPath: logPath,
		exited: make(chan struct{})}
	keys := make(chan [2]string, 1)
	go s.readStdout(stdout, keys)
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.kill)

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			t.Fatalf("bota serve exited during start; log:\n%s", s.log())
		default:
		}
		res, err := http.Get(s.URL() + "/health")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bota serve not ready after 60 s: %v; log:\n%s", err, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case k := <-keys:
		s.ProjectID, s.TestKey = k[0], k[1]
	case <-time.After(100 * time.Millisecond):
	}
	return s
}

var (
	projectLine = regexp.MustCompile(`Created project (proj_[A-Za-z0-9]+)`)
	testKeyLine = regexp.MustCompile(`test key: (sk_test_\S+)`)
)

// readStdout copies the first start's project id and test key to keys.
func (s *server) readStdout(r io.Reader, keys chan<- [2]string) {
	var project string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if m := projectLine.FindStringSubmatch(line); m != nil {
			project = m[1]
		}
		if m := testKeyLine.FindStringSubmatch(line); m != nil {
			keys <- [2]string{project, m[1]}
		}
	}
}

func (s *server) URL() string { return "http://" + s.addr }

// kill sends SIGKILL and waits for the process to end.
func (s *server) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

func (s *server) log() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// peakRSS returns the server's VmHWM (peak resident set) in KiB.
func (s *server) peakRSS() int64 {
	s.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		s.t.Fatalf("read server status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				s.t.Fatalf("parse VmHWM %q: %v", line, err)
			}
			return kb
		}
	}
	s.t.Fatalf("no VmHWM in /proc/%d/status", s.cmd.Process.Pid)
	return 0
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// apiClient sends JSON requests to a server.
type apiClient struct {
	base string
	http *http.Client
}

// reply is a decoded API answer.
type reply struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

func (r reply) str(key string) string {
	s, _ := r.Body[key].(string)
	return s
}

// call sends a JSON request; err is a transport error (the server died).
func (c *apiClient) call(method, path, token string, body any) (reply, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := c.http.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{Status: res.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &r.Body)
	return r, nil
}

// must sends a request and fails the test unless it gets status.
func (c *apiClient) must(t *testing.T, status int, method, path, token string, body any) reply {
	t.Helper()
	r, err := c.call(method, path, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.Status, status, r.Raw)
	}
	return r
}

// putFile streams size bytes from r to a signed URL.
func putFile(client *http.Client, rawURL string, headers map[string]string, r io.Reader, size int64) (int, error) {
	req, err := http.NewRequest(http.MethodPut, rawURL, r)
	if err != nil {
		return 0, err
	}
	req.ContentLength = size
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

func headersOf(r reply) map[string]string {
	out := map[string]string{}
	h, _ := r.Body["headers"].(map[string]any)
	for k, v := range h {
		out[k], _ = v.(string)
	}
	return out
}

// counter is a mutex-guarded count the tests wait on.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
