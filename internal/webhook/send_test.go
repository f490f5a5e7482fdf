package webhook_test

import (
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/botaserver/bota/internal/webhook"
	"github.com/botaserver/bota/webhooksig"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

const (
	testSecret = "whsec_5pXwq3T9bK7mZr2LdYc8vNfA"
	oldSecret  = "whsec_old4Hk2JqW9sXe6RtYu1Pz"
	testBody   = `{"id":"evt_1a2b3c","type":"webhook.test",` +
		`"created_at":"2026-01-01T00:00:00.000Z","data":{}}`
)

// received is what a test receiver saw of one request.
type received struct {
	method           string
	header           http.Header
	body             []byte
	contentLength    int64
	transferEncoding []string
}

// recordingServer starts a loopback receiver that stores each request and
// responds with status and reply.
func recordingServer(t *testing.T, status int, reply string) (*httptest.Server,
	chan received) {
	t.Helper()
	requests := make(chan received, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: read body: %v", err)
		}
		requests <- received{r.Method, r.Header.Clone(), body, r.ContentLength,
			r.TransferEncoding}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(srv.Close)
	return srv, requests
}

func allowPrivateClient() *http.Client {
	return webhook.NewClient(webhook.GuardConfig{AllowPrivate: true})
}

func testDelivery(url string) webhook.Delivery {
	return webhook.Delivery{
		URL:     url,
		EventID: "evt_1a2b3c",
		Body:    []byte(testBody),
		Secrets: []string{testSecret},
		Now:     time.Now(),
	}
}

func TestSendRequest(t *testing.T) {
	srv, requests := recordingServer(t, http.StatusOK, "ok")
	d := testDelivery(srv.URL)

	attempt := webhook.Send(context.Background(), allowPrivateClient(), d)
	if !attempt.Succeeded() {
		t.Fatalf("Send = %+v, want success", attempt)
	}
	r := <-requests

	if r.method != http.MethodPost {
		t.Errorf("method = %s, want POST", r.method)
	}
	if got := r.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if string(r.body) != testBody {
		t.Errorf("body = %q, want %q", r.body, testBody)
	}
	if r.contentLength != int64(len(testBody)) {
		t.Errorf("Content-Length = %d, want %d", r.contentLength, len(testBody))
	}
	if len(r.transferEncoding) != 0 {
		t.Errorf("Transfer-Encoding = %v, want none", r.transferEncoding)
	}
	if got := r.header.Get(webhooksig.EventIDHeader); got != "evt_1a2b3c" {
		t.Errorf("%s = %q, want evt_1a2b3c", webhooksig.EventIDHeader, got)
	}
	ts := r.header.Get(webhooksig.TimestampHeader)
	if !regexp.MustCompile(`^[0-9]{10}$`).MatchString(ts) {
		t.Errorf("%s = %q, want 10 digits", webhooksig.TimestampHeader, ts)
	}
	if ts != strconv.FormatInt(d.Now.Unix(), 10) {
		t.Errorf("%s = %s, want %d", webhooksig.TimestampHeader, ts, d.Now.Unix())
	}
	sig := r.header.Get(webhooksig.SignatureHeader)
	if !regexp.MustCompile(`^v1=[0-9a-f]{64}$`).MatchString(sig) {
		t.Errorf("%s = %q, want one v1= entry of 64 lowercase hex", webhooksig.SignatureHeader,
			sig)
	}
	if err := webhooksig.Verify(testSecret, r.header, r.body, time.Now(), 0); err != nil {
		t.Errorf("Verify received request: %v", err)
	}

	if attempt.StatusCode != http.StatusOK {
		t.Errorf("StatusCode = %d, want 200", attempt.StatusCode)
	}
	if attempt.ResponseSnippet != "ok" {
		t.Errorf("ResponseSnippet = %q, want ok", attempt.ResponseSnippet)
	}
	if attempt.Duration <= 0 {
		t.Errorf("Duration = %s, want > 0", attempt.Duration)
	}
}

func TestSendTwoSecrets(t *testing.T) {
	srv, requests := recordingServer(t, http.StatusNoContent, "")
	d := testDelivery(srv.URL)
	d.Secrets = []string{testSecret, oldSecret}

	attempt := webhook.Send(context.Background(), allowPrivateClient(), d)
	if !attempt.Succeeded() {
		t.Fatalf("Send = %+v, want success", attempt)
	}
	r := <-requests

	sig := r.header.Get(webhooksig.SignatureHeader)
	want := "v1=" + webhooksig.Sign(testSecret, d.Now, d.Body) +
		" v1=" + webhooksig.Sign(oldSecret, d.Now, d.Body)
	if sig != want {
		t.Errorf("%s = %q, want %q (new secret first)", webhooksig.SignatureHeader, sig, want)
	}
	for _, secret := range []string{testSecret, oldSecret} {
		if err := webhooksig.Verify(secret, r.header, r.body, time.Now(), 0); err != nil {
			t.Errorf("Verify with %s: %v", secret, err)
		}
	}
}

// TestSendGoldenHeaders fixes the header set that receivers parse. Host is
// left out because the test server's port changes.
func TestSendGoldenHeaders(t *testing.T) {
	srv, requests := recordingServer(t, http.StatusOK, "")
	d := testDelivery(srv.URL)
	d.Now = time.Unix(1767225600, 0)
	d.Secrets = []string{testSecret, oldSecret}

	attempt := webhook.Send(context.Background(), allowPrivateClient(), d)
	if !attempt.Succeeded() {
		t.Fatalf("Send = %+v, want success", attempt)
	}
	r := <-requests

	var lines []string
	for name, values := range r.header {
		for _, v := range values {
			lines = append(lines, name+": "+v)
		}
	}
	slices.Sort(lines)
	got := strings.Join(lines, "\n") + "\n"

	golden := filepath.Join("testdata", "delivery-headers.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatalf("write golden file: %v", err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("headers differ from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

func TestSendStatuses(t *testing.T) {
	tests := []struct {
		status  int
		success bool
		errText string
	}{
		{http.StatusOK, true, ""},
		{http.StatusCreated, true, ""},
		{http.StatusAccepted, true, ""},
		{http.StatusNoContent, true, ""},
		{http.StatusMovedPermanently, false, "redirects are not followed"},
		{http.StatusNotModified, false, "redirects are not followed"},
		{http.StatusBadRequest, false, "HTTP 400"},
		{http.StatusUnauthorized, false, "HTTP 401"},
		{http.StatusGone, false, "HTTP 410"},
		{http.StatusInternalServerError, false, "HTTP 500"},
		{http.StatusServiceUnavailable, false, "HTTP 503"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			srv, _ := recordingServer(t, tt.status, "reply body")
			attempt := webhook.Send(context.Background(), allowPrivateClient(),
				testDelivery(srv.URL))
			if attempt.Succeeded() != tt.success {
				t.Errorf("Succeeded = %v, want %v (attempt %+v)", attempt.Succeeded(),
					tt.success, attempt)
			}
			if attempt.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d", attempt.StatusCode, tt.status)
			}
			if !strings.Contains(attempt.Error, tt.errText) {
				t.Errorf("Error = %q, want it to contain %q", attempt.Error, tt.errText)
			}
			if tt.success && attempt.Error != "" {
				t.Errorf("Error = %q, want empty", attempt.Error)
			}
		})
	}
}

func TestSendRedirectNotFollowed(t *testing.T) {
	target, requests := recordingServer(t, http.StatusOK, "")
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusFound)
	}))
	t.Cleanup(redirector.Close)

	attempt := webhook.Send(context.Background(), allowPrivateClient(),
		testDelivery(redirector.URL))
	if attempt.Succeeded() {
		t.Errorf("Send through redirect succeeded, want failure")
	}
	if attempt.StatusCode != http.StatusFound {
		t.Errorf("StatusCode = %d, want 302", attempt.StatusCode)
	}
	if n := len(requests); n != 0 {
		t.Errorf("redirect target received %d requests, want 0", n)
	}
}

func TestSendSnippet(t *testing.T) {
	// 1023 ASCII bytes then a 3-byte character: the 1 KiB limit cuts it.
	long := strings.Repeat("a", 1023) + "€" + strings.Repeat("b", 4000)
	srv, _ := recordingServer(t, http.StatusBadGateway, long)

	attempt := webhook.Send(context.Background(), allowPrivateClient(), testDelivery(srv.URL))
	if !utf8.ValidString(attempt.ResponseSnippet) {
		t.Errorf("ResponseSnippet is not valid UTF-8: %q", attempt.ResponseSnippet)
	}
	if want := strings.Repeat("a", 1023); attempt.ResponseSnippet != want {
		t.Errorf("ResponseSnippet has %d bytes ending %q, want 1023 bytes of a",
			len(attempt.ResponseSnippet), attempt.ResponseSnippet[max(0,
				len(attempt.ResponseSnippet)-8):])
	}
}

func TestSendSnippetInvalidUTF8(t *testing.T) {
	srv, _ := recordingServer(t, http.StatusOK, "ok\xff\xfeend")
	attempt := webhook.Send(context.Background(), allowPrivateClient(), testDelivery(srv.URL))
	if attempt.ResponseSnippet != "ok\uFFFDend" {
		t.Errorf("ResponseSnippet = %q, want %q", attempt.ResponseSnippet, "ok\uFFFDend")
	}
}

func TestSendTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	client := webhook.NewClient(webhook.GuardConfig{AllowPrivate: true,
		Timeout: 200 * time.Millisecond})
	attempt := webhook.Send(context.Background(), client, testDelivery(srv.URL))
	if attempt.Succeeded() {
		t.Fatalf("Send to a hanging receiver succeeded")
	}
	if attempt.StatusCode != 0 {
		t.Errorf("StatusCode = %d, want 0", attempt.StatusCode)
	}
	if !strings.HasPrefix(attempt.Error, "timed out") {
		t.Errorf("Error = %q, want it to start with timed out", attempt.Error)
	}
	if attempt.Duration < 200*time.Millisecond || attempt.Duration > 5*time.Second {
		t.Errorf("Duration = %s, want about 200ms", attempt.Duration)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := listener.Addr().String()
	if err := listener.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}

	attempt := webhook.Send(context.Background(), allowPrivateClient(),
		testDelivery("http://"+addr+"/hook?token=s3cret"))
	if attempt.Succeeded() {
		t.Fatal("Send to a closed port succeeded")
	}
	if !strings.Contains(attempt.Error, "connection refused") {
		t.Errorf("Error = %q, want connection refused", attempt.Error)
	}
	if strings.Contains(attempt.Error, "s3cret") {
		t.Errorf("Error = %q contains the URL's query", attempt.Error)
	}
}

func TestSendBlockedAddress(t *testing.T) {
	srv, requests := recordingServer(t, http.StatusOK, "")
	client := webhook.NewClient(webhook.GuardConfig{})

	attempt := webhook.Send(context.Background(), client, testDelivery(srv.URL))
	if attempt.Succeeded() {
		t.Fatal("Send to loopback without AllowPrivate succeeded")
	}
	for _, want := range []string{"127.0.0.1 is a loopback address",
		"BOTA_WEBHOOK_ALLOW_PRIVATE=true"} {
		if !strings.Contains(attempt.Error, want) {
			t.Errorf("Error = %q, want it to contain %q", attempt.Error, want)
		}
	}
	if n := len(requests); n != 0 {
		t.Errorf("receiver got %d requests, want 0", n)
	}
}

func TestSendRejectsBadDelivery(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		hits.Add(1)
	}))
	t.Cleanup(srv.Close)

	tests := []struct {
		name   string
		change func(*webhook.Delivery)
		want   string
	}{
		{"no secrets", func(d *webhook.Delivery) { d.Secrets = nil }, "no signing secret"},
		{"no event id", func(d *webhook.Delivery) { d.EventID = "" }, "event id is missing"},
		{"id mismatch", func(d *webhook.Delivery) { d.EventID = "evt_other" },
			`"evt_other" does not match the body's id "evt_1a2b3c"`},
		{"body not json", func(d *webhook.Delivery) { d.Body = []byte("nope") },
			"not a JSON object"},
		{"time before 2001", func(d *webhook.Delivery) { d.Now = time.Unix(999999999, 0) },
			"10-digit"},
		{"time after 2286", func(d *webhook.Delivery) { d.Now = time.Unix(10000000000, 0) },
			"10-digit"},
		{"bad url", func(d *webhook.Delivery) { d.URL = "http://[::1" }, "build request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDelivery(srv.URL)
			tt.change(&d)
			attempt := webhook.Send(context.Background(), allowPrivateClient(), d)
			if attempt.Succeeded() {
				t.Fatal("Send succeeded, want failure")
			}
			if !strings.Contains(attempt.Error, tt.want) {
				t.Errorf("Error = %q, want it to contain %q", attempt.Error, tt.want)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("receiver got %d requests, want 0", n)
	}
}

func TestSendZeroNowUsesClock(t *testing.T) {
	srv, requests := recordingServer(t, http.StatusOK, "")
	d := testDelivery(srv.URL)
	d.Now = time.Time{}

	before := time.Now().Unix()
	attempt := webhook.Send(context.Background(), allowPrivateClient(), d)
	after := time.Now().Unix()
	if !attempt.Succeeded() {
		t.Fatalf("Send = %+v, want success", attempt)
	}
	r := <-requests
	ts, err := strconv.ParseInt(r.header.Get(webhooksig.TimestampHeader), 10, 64)
	if err != nil {
		t.Fatalf("parse timestamp: %v", err)
	}
	if ts < before || ts > after {
		t.Errorf("timestamp = %d, want between %d and %d", ts, before, after)
	}
}

func TestSendCanceledContext(t *testing.T) {
	srv, requests := recordingServer(t, http.StatusOK, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	attempt := webhook.Send(ctx, allowPrivateClient(), testDelivery(srv.URL))
	if attempt.Succeeded() {
		t.Fatal("Send with canceled context succeeded")
	}
	if !strings.Contains(attempt.Error, context.Canceled.Error()) {
		t.Errorf("Error = %q, want it to mention %q", attempt.Error, context.Canceled)
	}
	if n := len(requests); n != 0 {
		t.Errorf("receiver got %d requests, want 0", n)
	}
}

func TestAttemptSucceeded(t *testing.T) {
	tests := []struct {
		attempt webhook.Attempt
		want    bool
	}{
		{webhook.Attempt{StatusCode: 200}, true},
		{webhook.Attempt{StatusCode: 299}, true},
		{webhook.Attempt{StatusCode: 199}, false},
		{webhook.Attempt{StatusCode: 300}, false},
		{webhook.Attempt{StatusCode: 0, Error: "timed out"}, false},
		{webhook.Attempt{StatusCode: 200, Error: "unexpected"}, false},
	}
	for _, tt := range tests {
		if got := tt.attempt.Succeeded(); got != tt.want {
			t.Errorf("%+v.Succeeded() = %v, want %v", tt.attempt, got, tt.want)
		}
	}
}
