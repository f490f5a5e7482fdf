package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/webhook"
	"github.com/botaserver/bota/webhooksig"
)

// docsPath is the page whose receiver programs these tests run.
const docsPath = "../../docs/webhooks.md"

// docsBlock returns the fenced code block that follows the marker
// "<!-- tested: name -->" in docs/webhooks.md.
func docsBlock(t *testing.T, name string) string {
	t.Helper()
	doc, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatalf("read %s: %v", docsPath, err)
	}
	re := regexp.MustCompile("(?s)<!-- tested: " + regexp.QuoteMeta(name) +
		" -->\n```[a-z]*\n(.*?)\n```")
	m := re.FindSubmatch(doc)
	if m == nil {
		t.Fatalf("%s has no code block marked %q", docsPath, name)
	}
	return string(m[1])
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	return port
}

// startReceiver runs cmd with the receiver's secret and port in its
// environment and waits until the port accepts connections.
func startReceiver(t *testing.T, cmd *exec.Cmd, secret string) string {
	t.Helper()
	port := freePort(t)
	cmd.Env = append(os.Environ(), "BOTA_WEBHOOK_SECRET="+secret,
		"PORT="+strconv.Itoa(port))
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("receiver output:\n%s", output.String())
		}
	})

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return "http://" + addr + "/webhooks/bota"
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver did not listen on %s within 15s: %v\n%s", addr, err,
				output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkReceiver sends real deliveries to a receiver that holds oldSecret.
func checkReceiver(t *testing.T, url string) {
	t.Helper()
	client := allowPrivateClient()
	tests := []struct {
		name   string
		change func(*webhook.Delivery)
		status int
	}{
		{"old secret alone", func(d *webhook.Delivery) { d.Secrets = []string{oldSecret} }, 200},
		{"rotation overlap", func(d *webhook.Delivery) {
			d.Secrets = []string{testSecret, oldSecret}
		}, 200},
		{"new secret alone", func(d *webhook.Delivery) { d.Secrets = []string{testSecret} }, 401},
		{"stale", func(d *webhook.Delivery) {
			d.Secrets = []string{oldSecret}
			d.Now = time.Now().Add(-330 * time.Second)
		}, 401},
		{"future", func(d *webhook.Delivery) {
			d.Secrets = []string{oldSecret}
			d.Now = time.Now().Add(330 * time.Second)
		}, 401},
	}
	for _, tt := range tests {
		d := testDelivery(url)
		tt.change(&d)
		attempt := webhook.Send(context.Background(), client, d)
		if attempt.StatusCode != tt.status {
			t.Errorf("%s: status = %d, want %d (attempt %+v)", tt.name, attempt.StatusCode,
				tt.status, attempt)
		}
	}

	// A body changed after signing must fail. Send cannot do that, so the
	// request is built by hand.
	now := time.Now()
	tampered := bytes.Replace([]byte(testBody), []byte("evt_1a2b3c"), []byte("evt_1a2b3d"), 1)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(tampered))
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhooksig.TimestampHeader, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhooksig.SignatureHeader,
		webhooksig.Header([]string{oldSecret}, now, []byte(testBody)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST tampered body: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("tampered body: status = %d, want 401", resp.StatusCode)
	}
}

func TestDocsReceiverPython(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	script := filepath.Join(t.TempDir(), "receiver.py")
	if err := os.WriteFile(script, []byte(docsBlock(t, "receiver.py")), 0o600); err != nil {
		t.Fatalf("write script: %v", err)
	}
	url := startReceiver(t, exec.Command(python, script), oldSecret)
	checkReceiver(t, url)
}

func TestDocsReceiverNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	script := filepath.Join(t.TempDir(), "receiver.mjs")
	if err := os.WriteFile(script, []byte(docsBlock(t, "receiver.mjs")), 0o600); err != nil {
		t.Fatalf("write script: %v", err)
	}
	url := startReceiver(t, exec.Command(node, script), oldSecret)
	checkReceiver(t, url)
}

func TestDocsReceiverGo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program; skipped with -short")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatalf("module root: %v", err)
	}
	// The program lives in its own module that replaces this one with the
	// working tree, as a receiver's module would require it.
	dir := t.TempDir()
	goMod := fmt.Sprintf("module receiver\n\ngo 1.26\n\n"+
		"require github.com/botaserver/bota v0.0.0\n\n"+
		"replace github.com/botaserver/bota => %s\n", root)
	files := map[string]string{"go.mod": goMod, "main.go": docsBlock(t, "receiver.go")}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	binary := filepath.Join(dir, "receiver")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the docs' Go receiver: %v\n%s", err, out)
	}
	url := startReceiver(t, exec.Command(binary), oldSecret)
	checkReceiver(t, url)
}
