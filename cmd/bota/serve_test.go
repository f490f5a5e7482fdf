package main_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/testenv"
)

// binDir holds the bota binary that every test here runs.
var binDir string

func TestMain(m *testing.M) {
	code := run(m)
	testenv.StopAll()
	os.Exit(code)
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bota-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create binary folder:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	return m.Run()
}

var (
	buildOnce sync.Once
	buildErr  error
)

// botaBinary builds the command once per test binary and returns its path.
func botaBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(binDir, "bota")
	buildOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", path, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/bota: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return path
}

// commandEnv returns this process's environment without BOTA_ settings,
// plus extra (NAME=value entries).
func commandEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BOTA_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// lockedBuffer is a bytes.Buffer safe for a process writer and a reader.
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

// serverOptions are how a test starts "bota serve".
type serverOptions struct {
	dataDir string
	// env holds extra NAME=value settings, such as BOTA_DATABASE_URL.
	env []string
	// tlsCert and tlsKey are PEM files; both set makes the server HTTPS.
	tlsCert, tlsKey string
	// roots trusts the server's certificate.
	roots *x509.CertPool
	args  []string
}

// server is a running "bota serve" process.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string
	url     string
	client  *http.Client
	stdout  *lockedBuffer
	stderr  *lockedBuffer
	opts    serverOptions
	exited  chan struct{}
	exitErr error
}

const adminToken = "cmd-test-admin-token-0123456789"

// startServer runs "bota serve" on a free loopback port and waits until
// /health returns 200.
func startServer(t *testing.T, opts serverOptions) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()

	if opts.dataDir == "" {
		opts.dataDir = t.TempDir()
	}
	args := []string{"serve", "--addr", addr, "--data-dir", opts.dataDir, "--admin-token", adminToken}
	scheme := "http"
	client := &http.Client{Timeout: 30 * time.Second}
	if opts.tlsCert != "" {
		args = append(args, "--tls-cert", opts.tlsCert, "--tls-key", opts.tlsKey)
		scheme = "https"
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: opts.roots}}
	}
	args = append(args, opts.args...)

	s := &server{t: t, addr: addr, url: scheme + "://" + addr, client: client,
		stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, opts: opts, exited: make(chan struct{})}
	s.cmd = exec.Command(botaBinary(t), args...)
	s.cmd.Env = commandEnv(opts.env...)
	s.cmd.Stdout = s.stdout
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start bota serve: %v", err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			t.Fatalf("bota serve exited early: %v\nstdout:\n%s\nstderr:\n%s", s.exitErr, s.stdout, s.stderr)
		default:
		}
		res, err := s.client.Get(s.url + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("bota serve not healthy after 60 s: %v\nstderr:\n%s", err, s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and checks that the server exits with status 0.
func (s *server) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("send SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.t.Fatalf("bota serve still running 30 s after SIGTERM\nstderr:\n%s", s.stderr)
	}
	if s.exitErr != nil {
		s.t.Errorf("bota serve exit: %v\nstderr:\n%s", s.exitErr, s.stderr)
	}
}

var (
	testKeyLine = regexp.MustCompile(`(?m)^\s*test key: (sk_test_[A-Za-z0-9]+)$`)
	liveKeyLine = regexp.MustCompile(`(?m)^\s*live key: (sk_live_[A-Za-z0-9]+)$`)
)

// keys returns the test and live keys printed on first start.
func (s *server) keys() (string, string) {
	s.t.Helper()
	out := s.stdout.String()
	test, live := testKeyLine.FindStringSubmatch(out), liveKeyLine.FindStringSubmatch(out)
	if test == nil || live == nil {
		s.t.Fatalf("first start printed no keys:\n%s", out)
	}
	return test[1], live[1]
}

// response is a decoded HTTP response of the running server.
type response struct {
	status int
	body   map[string]any
	raw    []byte
}

func (s *server) do(method, path, token string, body any) response {
	s.t.Helper()
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.url+path, reader)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatalf("read %s %s: %v", method, path, err)
	}
	r := response{status: res.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (s *server) expect(r response, status int) {
	s.t.Helper()
	if r.status != status {
		s.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
}

// checkQuietLogs fails when the server's standard error shows a secret.
func (s *server) checkQuietLogs(secrets ...string) {
	s.t.Helper()
	logs := s.stderr.String()
	for _, secret := range append(secrets, adminToken) {
		if secret != "" && strings.Contains(logs, secret) {
			s.t.Errorf("standard error contains a secret (%.12s...)", secret)
		}
	}
	for _, prefix := range []string{"sk_test_", "sk_live_", "rk_test_", "rk_live_", "dtok_"} {
		if strings.Contains(logs, prefix) {
			s.t.Errorf("standard error contains %q", prefix)
		}
	}
}

// bota runs a bota command and returns its standard output and exit code.
func bota(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(botaBinary(t), args...)
	cmd.Env = commandEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	t.Fatalf("run bota %v: %v", args, err)
	return "", "", -1
}

func TestServeFirstStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, serverOptions{dataDir: dir})
	testKey, liveKey := s.keys()
	out := s.stdout.String()
	curl := "curl -H 'Authorization: Bearer " + testKey + "' http://" + s.addr + "/v1/devices"
	if !strings.Contains(out, curl) {
		t.Errorf("stdout has no line with %q:\n%s", curl, out)
	}

	r := s.do("GET", "/v1/devices", testKey, nil)
	s.expect(r, 200)
	if data, _ := r.body["data"].([]any); len(data) != 0 {
		t.Errorf("new server lists devices: %s", r.raw)
	}
	s.expect(s.do("GET", "/v1/devices", liveKey, nil), 200)
	s.expect(s.do("GET", "/v1/devices", "sk_test_wrong", nil), 401)
	s.stop()
	s.checkQuietLogs(testKey, liveKey)

	// A second start on the same data prints no keys and keeps the old ones.
	again := startServer(t, serverOptions{dataDir: dir})
	if strings.Contains(again.stdout.String(), "sk_") {
		t.Errorf("second start printed keys:\n%s", again.stdout)
	}
	again.expect(again.do("GET", "/v1/devices", testKey, nil), 200)
	again.stop()
}

// databases are the stores the command tests run on: SQLite in the data
// dir, and a new PostgreSQL database from testenv.
func databases(t *testing.T) []struct {
	name string
	env  func(t *testing.T) []string
} {
	return []struct {
		name string
		env  func(t *testing.T) []string
	}{
		{"sqlite", func(*testing.T) []string { return nil }},
		{"postgres", func(t *testing.T) []string {
			return []string{"BOTA_DATABASE_URL=" + testenv.PostgresURL(t)}
		}},
	}
}

func TestProjectAndKeyCommands(t *testing.T) {
	t.Parallel()
	for _, db := range databases(t) {
		t.Run(db.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			env := append(db.env(t), "BOTA_DATA_DIR="+dir)
			s := startServer(t, serverOptions{dataDir: dir, env: env})

			out, stderr, code := bota(t, env, "project", "create", "Acme", "--json")
			if code != 0 {
				t.Fatalf("project create: exit %d: %s", code, stderr)
			}
			var project struct {
				ID      string           `json:"id"`
				Name    string           `json:"name"`
				TestKey string           `json:"test_key"`
				LiveKey string           `json:"live_key"`
				Keys    []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal([]byte(out), &project); err != nil {
				t.Fatalf("project create --json printed %q: %v", out, err)
			}
			if !regexp.MustCompile(`^proj_[A-Za-z0-9]{1,64}$`).MatchString(project.ID) || project.Name != "Acme" {
				t.Errorf("project = %+v", project)
			}
			if !strings.HasPrefix(project.TestKey, "sk_test_") || !strings.HasPrefix(project.LiveKey, "sk_live_") ||
				len(project.Keys) != 2 {
				t.Fatalf("project keys = %s", out)
			}
			s.expect(s.do("GET", "/v1/devices", project.TestKey, nil), 200)
			s.expect(s.do("POST", "/v1/end-users", project.LiveKey, map[string]any{}), 201)

			out, stderr, code = bota(t, env, "key", "create", "--project", project.ID, "--mode", "test",
				"--scopes", "devices:read,end_users:read", "--json")
			if code != 0 {
				t.Fatalf("key create: exit %d: %s", code, stderr)
			}
			var key map[string]any
			if err := json.Unmarshal([]byte(out), &key); err != nil {
				t.Fatalf("key create --json printed %q: %v", out, err)
			}
			restricted, _ := key["secret"].(string)
			keyID, _ := key["id"].(string)
			if !strings.HasPrefix(restricted, "rk_test_") || key["restricted"] != true {
				t.Fatalf("restricted key = %s", out)
			}
			s.expect(s.do("GET", "/v1/devices", restricted, nil), 200)
			s.expect(s.do("GET", "/v1/end-users", restricted, nil), 200)
			r := s.do("POST", "/v1/devices", restricted, map[string]any{"serial_number": "x"})
			s.expect(r, 403)
			if e, _ := r.body["error"].(map[string]any); e["code"] != "insufficient_scope" {
				t.Errorf("error = %s", r.raw)
			}

			secrets := []string{project.TestKey, project.LiveKey, restricted}
			for _, format := range [][]string{{"--json"}, nil} {
				args := append([]string{"key", "list", "--project", project.ID}, format...)
				out, stderr, code = bota(t, env, args...)
				if code != 0 {
					t.Fatalf("key list %v: exit %d: %s", format, code, stderr)
				}
				for _, secret := range secrets {
					if strings.Contains(out, secret) {
						t.Errorf("key list %v shows a secret:\n%s", format, out)
					}
				}
				if !strings.Contains(out, keyID) {
					t.Errorf("key list %v does not show %s:\n%s", format, keyID, out)
				}
			}
			var listed []map[string]any
			out, _, _ = bota(t, env, "key", "list", "--project", project.ID, "--json")
			if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 3 {
				t.Errorf("key list --json = %s (%v), want 3 keys", out, err)
			}

			out, stderr, code = bota(t, env, "key", "revoke", keyID)
			if code != 0 || !strings.Contains(out, keyID) {
				t.Fatalf("key revoke: exit %d: %s %s", code, out, stderr)
			}
			s.expect(s.do("GET", "/v1/devices", restricted, nil), 401)
			s.expect(s.do("GET", "/v1/devices", project.TestKey, nil), 200)

			failures := []struct {
				args []string
				code int
			}{
				{[]string{"key", "create", "--project", project.ID, "--mode", "test", "--scopes", "devices:fly"}, 1},
				{[]string{"key", "create", "--project", "proj_unknown", "--mode", "test"}, 1},
				{[]string{"key", "create", "--project", project.ID, "--mode", "prod"}, 2},
				{[]string{"key", "revoke", "key_unknown"}, 1},
				{[]string{"key", "revoke"}, 2},
				{[]string{"key", "list"}, 2},
				{[]string{"project", "create"}, 2},
				{[]string{"project", "delete", "x"}, 2},
			}
			for _, f := range failures {
				out, stderr, code := bota(t, env, f.args...)
				if code != f.code {
					t.Errorf("bota %v: exit %d, want %d; %s %s", f.args, code, f.code, out, stderr)
				}
				if strings.TrimSpace(stderr) == "" {
					t.Errorf("bota %v: no message on standard error", f.args)
				}
			}
			s.stop()
			s.checkQuietLogs(secrets...)
		})
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	testKey, _ := s.keys()

	body := `{"external_id":"in-flight"}`
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := "POST /v1/end-users HTTP/1.1\r\nHost: " + s.addr + "\r\nAuthorization: Bearer " + testKey +
		"\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head+body[:5]); err != nil {
		t.Fatal(err)
	}
	// Let the server read the headers, so the request is in flight.
	time.Sleep(300 * time.Millisecond)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// Shutdown closes the listener first; wait for that, so the rest of
	// the body surely arrives during shutdown.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("listener still open 10 s after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-s.exited:
		t.Fatalf("server exited with a request in flight: %v", s.exitErr)
	default:
	}

	if _, err := io.WriteString(conn, body[5:]); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read in-flight response: %v", err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated || !strings.Contains(string(raw), `"in-flight"`) {
		t.Errorf("in-flight request: %d %s", res.StatusCode, raw)
	}

	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("server still running 30 s after SIGTERM")
	}
	if s.exitErr != nil {
		t.Errorf("exit after SIGTERM: %v\nstderr:\n%s", s.exitErr, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), "ServerStopped") {
		t.Errorf("no ServerStopped in the log:\n%s", s.stderr)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and localhost and its
// key into dir and returns the paths and a pool that trusts it.
func selfSignedCert(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "bota test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

// TestAcceptanceOverHTTPS runs the device flow a customer backend and a
// device go through, against the built binary serving HTTPS.
func TestAcceptanceOverHTTPS(t *testing.T) {
	t.Parallel()
	for _, db := range databases(t) {
		t.Run(db.name, func(t *testing.T) {
			t.Parallel()
			certPath, keyPath, roots := selfSignedCert(t, t.TempDir())
			s := startServer(t, serverOptions{env: db.env(t), tlsCert: certPath, tlsKey: keyPath, roots: roots})
			key, _ := s.keys()
			if !strings.Contains(s.stdout.String(), "https://"+s.addr+"/v1/devices") {
				t.Errorf("curl line does not use https:\n%s", s.stdout)
			}

			// A client that does not trust the certificate is refused.
			if _, err := http.Get(s.url + "/health"); err == nil {
				t.Errorf("untrusted client reached the server")
			}
			plain, err := http.Get("http://" + s.addr + "/health")
			if err == nil {
				if plain.StatusCode == http.StatusOK {
					t.Errorf("plain HTTP returned 200 on the HTTPS port")
				}
				plain.Body.Close()
			}

			r := s.do("POST", "/v1/end-users", key, map[string]any{"external_id": "acceptance"})
			s.expect(r, 201)
			endUser, _ := r.body["id"].(string)
			r = s.do("POST", "/v1/devices", key, map[string]any{"serial_number": "ACC-0001", "model": "bota_pin"})
			s.expect(r, 201)
			device, _ := r.body["id"].(string)
			r = s.do("POST", "/v1/devices/"+device+"/bind", key, map[string]any{"end_user_id": endUser})
			s.expect(r, 200)
			token, _ := r.body["device_token"].(string)
			if !strings.HasPrefix(token, "dtok_") {
				t.Fatalf("bind: %s", r.raw)
			}

			r = s.do("POST", "/v1/devices/me/heartbeat", token, map[string]any{"battery_percent": 77})
			s.expect(r, 200)
			if r.body["status"] != "ok" {
				t.Errorf("heartbeat: %s", r.raw)
			}
			r = s.do("GET", "/v1/devices/"+device, key, nil)
			s.expect(r, 200)
			if r.body["battery_percent"] != float64(77) || r.body["status"] != "bound" ||
				r.body["end_user_id"] != endUser {
				t.Errorf("device after heartbeat: %s", r.raw)
			}

			r = s.do("POST", "/v1/devices/me/token/refresh", token, nil)
			s.expect(r, 200)
			next, _ := r.body["device_token"].(string)
			if !strings.HasPrefix(next, "dtok_") || next == token {
				t.Fatalf("refresh: %s", r.raw)
			}
			s.expect(s.do("POST", "/v1/devices/me/heartbeat", token, map[string]any{}), 200)
			s.expect(s.do("POST", "/v1/devices/me/heartbeat", next, map[string]any{"battery_percent": 76}), 200)
			s.expect(s.do("POST", "/v1/devices/me/heartbeat", token, map[string]any{}), 401)
			r = s.do("GET", "/v1/devices/"+device, key, nil)
			if r.body["battery_percent"] != float64(76) {
				t.Errorf("battery_percent = %v, want 76", r.body["battery_percent"])
			}

			s.stop()
			s.checkQuietLogs(key, token, next)
		})
	}
}

// A start that fails on a setting creates no project, so the keys of the
// first good start are printed then, not lost among the error lines.
func TestServeFailedStartPrintsNoKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stdout, stderr, code := bota(t, nil, "serve", "--addr", "nonsense", "--data-dir", dir)
	if code == 0 || strings.Contains(stdout, "sk_") {
		t.Errorf("start with --addr nonsense: exit %d, stdout %q; want a failure without keys", code, stdout)
	}
	if !strings.Contains(stderr, "nonsense") {
		t.Errorf("stderr %q does not name the bad address", stderr)
	}
	s := startServer(t, serverOptions{dataDir: dir})
	if testKey, _ := s.keys(); testKey == "" {
		t.Errorf("first good start printed no test key:\n%s", s.stdout)
	}
	s.stop()
}

// A body that stalls is cut off after --body-idle-timeout, and one that
// keeps sending, however slowly, is served.
func TestServeBodyIdleTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{args: []string{"--body-idle-timeout", "1s"}})
	testKey, _ := s.keys()
	head := func(n int) string {
		return "POST /v1/end-users HTTP/1.1\r\nHost: " + s.addr + "\r\nAuthorization: Bearer " + testKey +
			"\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(n) + "\r\n\r\n"
	}

	stalled, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := io.WriteString(stalled, head(1000)+`{"ext`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	reply, _ := io.ReadAll(stalled)
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("stalled body held the connection %s, want about 1 s", waited)
	}
	if line := firstLine(string(reply)); line != "HTTP/1.1 408 Request Timeout" ||
		!strings.Contains(string(reply), `"code":"request_timeout"`) {
		t.Errorf("stalled body: reply %q, want 408 request_timeout", reply)
	}

	slow, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	body := `{"external_id":"slow"}`
	if _, err := io.WriteString(slow, head(len(body))); err != nil {
		t.Fatal(err)
	}
	// 22 bytes, one every 300 ms: 6.6 s in all, never 1 s without one.
	for i := range len(body) {
		if _, err := io.WriteString(slow, body[i:i+1]); err != nil {
			t.Fatalf("slow body cut off after %d bytes: %v", i, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(slow).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 201") {
		t.Errorf("slow body: status line %q, want 201", line)
	}
	s.stop()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// A boolean flag's value written after a space is an argument to Go's flag
// package; the message shows the form with =.
func TestServeBooleanValueHint(t *testing.T) {
	t.Parallel()
	_, stderr, code := bota(t, nil, "serve", "--data-dir", t.TempDir(), "--disk-sync", "false")
	if code == 0 || !strings.Contains(stderr, "--disk-sync=false") {
		t.Errorf("serve --disk-sync false: exit %d, stderr %q; want a failure that shows --disk-sync=false", code, stderr)
	}
}

// Key commands name a missing SQLite database instead of creating an
// empty one.
func TestKeyCommandWithoutDatabase(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "no-such-data")
	_, stderr, code := bota(t, nil, "key", "list", "--project", "proj_x", "--data-dir", dir)
	if code == 0 || !strings.Contains(stderr, "no database at") || !strings.Contains(stderr, "--data-dir") {
		t.Errorf("key list on a missing database: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("key list created %s (stat error %v)", dir, err)
	}
}
