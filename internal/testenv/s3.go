package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersityGWInstall is the command that installs the S3 server S3 starts.
const VersityGWInstall = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// Credentials and region of the throwaway S3 server. S3 exports them as
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION, so that code
// under test finds them through the AWS SDK's usual sources.
const (
	S3AccessKey = "bota-test-access-key"
	S3SecretKey = "bota-test-secret-key-0123456789"
	S3Region    = "us-east-1"
)

const (
	s3StartAttempts = 3
	s3ReadyTimeout  = 30 * time.Second
	s3StopTimeout   = 10 * time.Second
)

// s3Server is the versitygw process this test process started. A mutex
// rather than sync.Once guards it so that a call after StopAll starts a
// fresh server instead of returning a dead endpoint.
var s3Server struct {
	mu       sync.Mutex
	endpoint string
	stop     func()
}

// S3 creates an empty bucket for this test and returns its storage URL,
// s3://BUCKET?endpoint=http://127.0.0.1:PORT. The bucket lives on a
// versitygw server (posix back end in a temporary folder) that the first
// call in this process starts and StopAll stops. S3 also sets the AWS_*
// credential variables for the whole process and unsets AWS_PROFILE and
// AWS_SESSION_TOKEN. It fails the test when versitygw is missing or does
// not start; it never skips.
func S3(t testing.TB) string {
	t.Helper()

	endpoint, err := s3Endpoint()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := setS3Env(); err != nil {
		t.Fatalf("testenv: %v", err)
	}

	bucket, err := newBucketName(t.Name())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = s3AdminClient(endpoint).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket})
	if err != nil {
		t.Fatalf("testenv: create bucket %s on %s: %v", bucket, endpoint, err)
	}
	return "s3://" + bucket + "?endpoint=" + url.QueryEscape(endpoint)
}

// setS3Env points the AWS SDK's default credential chain at the test
// server. The variables are set for the whole process, not with t.Setenv,
// because t.Setenv cannot be used in parallel tests.
func setS3Env() error {
	vars := map[string]string{
		"AWS_ACCESS_KEY_ID":     S3AccessKey,
		"AWS_SECRET_ACCESS_KEY": S3SecretKey,
		"AWS_REGION":            S3Region,
		// The SDK would otherwise ask the EC2 metadata address for
		// credentials when the others are missing.
		"AWS_EC2_METADATA_DISABLED": "true",
	}
	for name, value := range vars {
		if err := os.Setenv(name, value); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	for _, name := range []string{"AWS_PROFILE", "AWS_SESSION_TOKEN"} {
		if err := os.Unsetenv(name); err != nil {
			return fmt.Errorf("unset %s: %w", name, err)
		}
	}
	return nil
}

func s3AdminClient(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:       S3Region,
		Credentials:  credentials.NewStaticCredentialsProvider(S3AccessKey, S3SecretKey, ""),
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
	})
}

// newBucketName returns a fresh bucket name that shows the test's name:
// 3 to 63 bytes of [a-z0-9-], starting and ending with a letter or digit.
func newBucketName(testName string) (string, error) {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 40 {
			break
		}
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			b.WriteRune(r)
		} else if s := b.String(); s != "" && !strings.HasSuffix(s, "-") {
			b.WriteByte('-')
		}
	}
	random := make([]byte, 6)
	if _, err := rand.Read(random); err != nil {
		return "", fmt.Errorf("make bucket name: %w", err)
	}
	name := "t-"
	if label := strings.Trim(b.String(), "-"); label != "" {
		name += label + "-"
	}
	return name + hex.EncodeToString(random), nil
}

// s3Endpoint returns the endpoint of the running server, starting one if
// there is none.
func s3Endpoint() (string, error) {
	s3Server.mu.Lock()
	defer s3Server.mu.Unlock()
	if s3Server.endpoint != "" {
		return s3Server.endpoint, nil
	}

	endpoint, stop, err := startVersityGW()
	if err != nil {
		return "", err
	}
	s3Server.endpoint = endpoint
	s3Server.stop = stop
	registerStop(func() {
		s3Server.mu.Lock()
		defer s3Server.mu.Unlock()
		if s3Server.stop != nil {
			s3Server.stop()
		}
		s3Server.endpoint = ""
		s3Server.stop = nil
	})
	return endpoint, nil
}

// findVersityGW looks for versitygw on PATH, then in the folder where
// `go install` puts programs.
func findVersityGW() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		for _, p := range filepath.SplitList(gopath) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("versitygw not found on PATH or in %s; install it with `%s`",
		strings.Join(dirs, ", "), VersityGWInstall)
}

// startVersityGW starts versitygw on a free port of 127.0.0.1 with its data
// in a new temporary folder and waits until it responds to HTTP. The returned
// stop function, safe to call more than once, ends the process and removes
// the folder.
func startVersityGW() (endpoint string, stop func(), err error) {
	bin, err := findVersityGW()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "bota-versitygw-")
	if err != nil {
		return "", nil, fmt.Errorf("create versitygw folder: %w", err)
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("create versitygw folder: %w", err)
	}

	// A port found free can be taken before versitygw binds it; try again
	// on another port then.
	var lastErr error
	for range s3StartAttempts {
		var proc *versityProcess
		proc, lastErr = startVersityOnce(bin, dir, dataDir)
		if lastErr == nil {
			var once sync.Once
			stop = func() {
				once.Do(func() {
					proc.stop()
					_ = os.RemoveAll(dir)
				})
			}
			return proc.endpoint, stop, nil
		}
	}
	_ = os.RemoveAll(dir)
	return "", nil, lastErr
}

// versityProcess is one running versitygw.
type versityProcess struct {
	cmd      *exec.Cmd
	endpoint string
	exited   chan struct{}
	waitErr  error
}

func startVersityOnce(bin, dir, dataDir string) (*versityProcess, error) {
	port, err := s3FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logPath := filepath.Join(dir, fmt.Sprintf("versitygw-%d.log", port))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create versitygw log: %w", err)
	}
	defer func() { _ = logFile.Close() }()

	cmd := exec.Command(bin, "--access", S3AccessKey, "--secret", S3SecretKey,
		"--port", addr, "posix", dataDir)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = versityProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &versityProcess{cmd: cmd, endpoint: "http://" + addr, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()

	if err := p.waitReady(); err != nil {
		p.stop()
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("versitygw on %s: %w; log:\n%s", addr, err, tailLines(log, 20))
	}
	return p, nil
}

// waitReady polls until the server sends any HTTP response, the process
// exits or s3ReadyTimeout passes.
func (p *versityProcess) waitReady() error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(s3ReadyTimeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it responded: %v", p.waitErr)
		default:
		}
		resp, err := client.Get(p.endpoint + "/")
		if err == nil {
			_ = resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no response after %s: %w", s3ReadyTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM, and SIGKILL if the process is still there after
// s3StopTimeout.
func (p *versityProcess) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(s3StopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// s3FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func s3FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// tailLines returns the last n lines of out.
func tailLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
