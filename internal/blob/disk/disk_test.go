package disk_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/blob/blobtest"
	"github.com/botaserver/bota/internal/blob/disk"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// server is a disk store behind a real HTTP server, with a middleware that
// sets Request-Id as the API's does.
type server struct {
	store *disk.Store
	url   string
	dir   string
}

func newServer(t testing.TB, maxSize int64, configure ...func(*disk.Config)) *server {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	publicURL := "http://" + ts.Listener.Addr().String()

	dir := t.TempDir()
	cfg := disk.Config{
		Dir:       dir,
		PublicURL: publicURL,
		Secret:    testSecret,
		MaxSize:   maxSize,
		Logger:    slog.New(slog.DiscardHandler),
	}
	for _, fn := range configure {
		fn(&cfg)
	}
	store, err := disk.New(cfg)
	if err != nil {
		t.Fatalf("disk.New: %v", err)
	}
	// The handler runs without a ServeMux, which would redirect paths with
	// ".." before the handler could reject them.
	ts.Config.Handler = withRequestID(store.Handler())
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		if err := store.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &server{store: store, url: publicURL, dir: dir}
}

// withRequestID sets a Request-Id header, as the API's middleware does,
// unless the request has an X-No-Request-Id header.
func withRequestID(h http.Handler) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-No-Request-Id") == "" {
			w.Header().Set("Request-Id", fmt.Sprintf("req_test%d", n.Add(1)))
		}
		h.ServeHTTP(w, r)
	})
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t testing.TB) blob.Store {
		return newServer(t, 0).store
	})
}

// Without fsyncs the store keeps the same contract.
func TestConformanceNoSync(t *testing.T) {
	blobtest.Run(t, func(t testing.TB) blob.Store {
		return newServer(t, 0, func(c *disk.Config) { c.NoSync = true }).store
	})
}

// rawResponse is a response read off a raw connection.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// sendRaw writes head (request line and headers, without the blank line)
// and body to the server as they are, so that paths reach the handler
// unchanged, and reads the response.
func sendRaw(t *testing.T, srv *server, head string, body []byte) rawResponse {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(srv.url, "http://"), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	msg := head + "\r\nHost: bota.test\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatalf("write request head: %v", err)
	}
	// The server may respond and close before reading the body.
	_, _ = conn.Write(body)
	// ReadResponse needs the method to know that a HEAD response has no body.
	method, _, _ := strings.Cut(head, " ")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response to %q: %v", strings.SplitN(head, "\r\n", 2)[0], err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

// requireError checks the status and the API error body, whose request_id
// must equal the Request-Id header, or be null when there is none.
func requireError(t *testing.T, what string, r rawResponse, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d; body: %s", what, r.status, status, r.body)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var body struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Errorf("%s: body %q is not JSON: %v", what, r.body, err)
		return
	}
	e := body.Error
	if e["code"] != code {
		t.Errorf("%s: code %v, want %q", what, e["code"], code)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("%s: empty message", what)
	}
	for _, field := range []string{"param", "details", "request_id"} {
		if _, ok := e[field]; !ok {
			t.Errorf("%s: error has no %q field", what, field)
		}
	}
	if e["param"] != nil || e["details"] != nil {
		t.Errorf("%s: param %v, details %v, want null", what, e["param"], e["details"])
	}
	if id := r.header.Get("Request-Id"); id == "" {
		if e["request_id"] != nil {
			t.Errorf("%s: request_id %v, want null", what, e["request_id"])
		}
	} else if e["request_id"] != id {
		t.Errorf("%s: request_id %v, want the Request-Id header %q", what, e["request_id"], id)
	}
}

// target returns the path and query of a signed URL as they are, with a
// template's placeholder left unescaped.
func target(t *testing.T, rawURL string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(rawURL, "http://")
	i := strings.IndexByte(rest, '/')
	if !ok || i < 0 {
		t.Fatalf("URL %q is not an absolute http URL with a path", rawURL)
	}
	return rest[i:]
}

// withQuery returns target with one query parameter set to value, or
// removed when value is empty.
func withQuery(t *testing.T, tgt, name, value string) string {
	t.Helper()
	path, rawQuery, _ := strings.Cut(tgt, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		t.Fatalf("parse query %q: %v", rawQuery, err)
	}
	if value == "" {
		q.Del(name)
	} else {
		q.Set(name, value)
	}
	return path + "?" + q.Encode()
}

func putHead(tgt, contentType string, length int) string {
	return fmt.Sprintf("PUT %s HTTP/1.1\r\nContent-Type: %s\r\nContent-Length: %d",
		tgt, contentType, length)
}

const (
	testKey  = "proj_x/rec_y/med_z/audio.opus"
	testType = "audio/opus"
)

func TestHandlerRejectsPut(t *testing.T) {
	srv := newServer(t, 0)
	ctx := context.Background()
	body := []byte("hello world")
	signed, err := srv.store.PresignPut(ctx, testKey, blob.PutOptions{
		ContentType: testType, ContentLength: int64(len(body)), Expires: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}
	tgt := target(t, signed.URL)
	query := tgt[strings.IndexByte(tgt, '?'):]
	sig, err := url.ParseQuery(query[1:])
	if err != nil {
		t.Fatalf("parse query: %v", err)
	}
	tamperedSig := "A" + sig.Get("signature")[1:]
	if tamperedSig == sig.Get("signature") {
		tamperedSig = "B" + sig.Get("signature")[1:]
	}
	expires, err := time.Parse(time.RFC3339, signed.Expires.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("parse expiry: %v", err)
	}

	tests := []struct {
		name string
		head string
		body []byte
	}{
		{"tampered signature", putHead(withQuery(t, tgt, "signature", tamperedSig),
			testType, 11), body},
		{"missing signature", putHead(withQuery(t, tgt, "signature", ""), testType, 11), body},
		{"missing expiry", putHead(withQuery(t, tgt, "expires", ""), testType, 11), body},
		{"later expiry", putHead(withQuery(t, tgt, "expires",
			fmt.Sprint(expires.Unix()+3600)), testType, 11), body},
		{"changed signed length", putHead(withQuery(t, tgt, "content_length", "12"),
			testType, 12), append(body, '!')},
		{"changed signed type", putHead(withQuery(t, tgt, "content_type", "audio/wav"),
			"audio/wav", 11), body},
		{"wrong Content-Type", putHead(tgt, "audio/wav", 11), body},
		{"Content-Type with parameters", putHead(tgt, "audio/opus; codecs=opus", 11), body},
		{"shorter Content-Length", putHead(tgt, testType, 10), body[:10]},
		{"longer Content-Length", putHead(tgt, testType, 12), append(body, '!')},
		{"chunked body", "PUT " + tgt + " HTTP/1.1\r\nContent-Type: audio/opus\r\n" +
			"Transfer-Encoding: chunked", []byte("b\r\nhello world\r\n0\r\n\r\n")},
		{"repeated parameter", putHead(tgt+"&expires=1", testType, 11), body},
		{"another key", putHead(strings.Replace(tgt, "audio.opus", "other.opus", 1),
			testType, 11), body},
		{"GET on a PUT URL", "GET " + tgt + " HTTP/1.1", nil},
		{"DELETE", "DELETE " + tgt + " HTTP/1.1", nil},
		{"POST", putHead(tgt, testType, 11)[len("PUT"):], body},
		{"dot-dot segment", putHead("/uploads/proj_x/../"+testKey+query, testType, 11), body},
		{"dot segment", putHead("/uploads/proj_x/./rec_y/med_z/audio.opus"+query,
			testType, 11), body},
		{"absolute path", putHead("/uploads//etc/passwd"+query, testType, 11), body},
		{"encoded slash", putHead("/uploads/proj_x%2Frec_y%2Fmed_z%2Faudio.opus"+query,
			testType, 11), body},
		{"encoded dot-dot", putHead("/uploads/%2e%2e/%2e%2e/etc/passwd"+query,
			testType, 11), body},
		{"NUL byte", putHead("/uploads/proj_x/a%00.opus"+query, testType, 11), body},
		{"backslash", putHead(`/uploads/proj_x\..\..\a.opus`+query, testType, 11), body},
		{"encoded backslash", putHead("/uploads/proj_x%5Ca.opus"+query, testType, 11), body},
		{"trailing slash", putHead("/uploads/proj_x/"+query, testType, 11), body},
		{"empty key", putHead("/uploads/"+query, testType, 11), body},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "POST" {
				tc.head = "POST" + tc.head
			}
			r := sendRaw(t, srv, tc.head, tc.body)
			requireError(t, tc.name, r, http.StatusForbidden, "forbidden")
		})
	}

	if _, err := srv.store.Stat(ctx, testKey); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat after rejected PUTs: error = %v, want blob.ErrNotFound", err)
	}
	// The signed request itself still works.
	r := sendRaw(t, srv, putHead(tgt, testType, 11), body)
	if r.status != http.StatusOK {
		t.Fatalf("signed PUT: status %d, body %s", r.status, r.body)
	}
}

func TestHandlerRequestIDNull(t *testing.T) {
	srv := newServer(t, 0)
	r := sendRaw(t, srv, "PUT /uploads/proj_x/a.opus HTTP/1.1\r\nX-No-Request-Id: 1\r\n"+
		"Content-Type: audio/opus\r\nContent-Length: 1", []byte("x"))
	requireError(t, "unsigned PUT without Request-Id", r, http.StatusForbidden, "forbidden")
	if !bytes.Contains(r.body, []byte(`"request_id":null`)) {
		t.Errorf("body %s has no \"request_id\":null", r.body)
	}

	r = sendRaw(t, srv, "PUT /uploads/proj_x/a.opus HTTP/1.1\r\n"+
		"Content-Type: audio/opus\r\nContent-Length: 1", []byte("x"))
	if !bytes.Contains(r.body, []byte(`"request_id":"req_test`)) {
		t.Errorf("body %s does not carry the Request-Id header", r.body)
	}
}

func TestHandlerOutsideUploadsPath(t *testing.T) {
	srv := newServer(t, 0)
	r := sendRaw(t, srv, "GET /v1/recordings HTTP/1.1", nil)
	requireError(t, "GET outside /uploads/", r, http.StatusNotFound, "not_found")
}

func TestHandlerGetHeadRange(t *testing.T) {
	srv := newServer(t, 0)
	ctx := context.Background()
	data := []byte("0123456789abcdef")
	err := srv.store.Put(ctx, testKey, bytes.NewReader(data), int64(len(data)), "audio/ogg")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	signed, err := srv.store.PresignGet(ctx, testKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	tgt := target(t, signed.URL)

	r := sendRaw(t, srv, "HEAD "+tgt+" HTTP/1.1", nil)
	if r.status != http.StatusOK {
		t.Fatalf("HEAD status %d, want 200", r.status)
	}
	if got := r.header.Get("Content-Length"); got != "16" {
		t.Errorf("HEAD Content-Length %q, want 16", got)
	}
	if got := r.header.Get("Content-Type"); got != "audio/ogg" {
		t.Errorf("HEAD Content-Type %q, want audio/ogg", got)
	}
	if len(r.body) != 0 {
		t.Errorf("HEAD returned a body of %d bytes", len(r.body))
	}

	r = sendRaw(t, srv, "GET "+tgt+" HTTP/1.1\r\nRange: bytes=4-7", nil)
	if r.status != http.StatusPartialContent || string(r.body) != "4567" {
		t.Errorf("GET with Range: %d %q, want 206 \"4567\"", r.status, r.body)
	}

	r = sendRaw(t, srv, "PUT "+tgt+" HTTP/1.1\r\nContent-Type: audio/ogg\r\nContent-Length: 1",
		[]byte("x"))
	requireError(t, "PUT on a GET URL", r, http.StatusForbidden, "forbidden")
}

func TestPrefixSigner(t *testing.T) {
	srv := newServer(t, 0)
	ctx := context.Background()
	const prefix = "proj_x/rec_y/chunks/chunk_"
	signed, err := srv.store.PresignPutPrefix(ctx, prefix, "{chunk_number}", ".opus", testType,
		100, time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatalf("PresignPutPrefix: %v", err)
	}
	wantStart := srv.url + "/uploads/" + prefix + "{chunk_number}.opus?"
	if !strings.HasPrefix(signed.URL, wantStart) {
		t.Fatalf("template %q does not start with %q", signed.URL, wantStart)
	}
	if signed.Headers["Content-Type"] != testType {
		t.Errorf("Headers = %v, want Content-Type %s", signed.Headers, testType)
	}
	tmpl := target(t, signed.URL)
	chunk := func(value string) string {
		return strings.Replace(tmpl, "{chunk_number}", value, 1)
	}

	for i, size := range []int{50, 100, 1} {
		n := fmt.Sprint(i + 1)
		r := sendRaw(t, srv, putHead(chunk(n), testType, size), bytes.Repeat([]byte(n), size))
		if r.status != http.StatusOK {
			t.Fatalf("PUT chunk %s: status %d, body %s", n, r.status, r.body)
		}
	}
	// Chunks may be sent again, for a retry after a lost response.
	r := sendRaw(t, srv, putHead(chunk("3"), testType, 2), []byte("33"))
	if r.status != http.StatusOK {
		t.Fatalf("PUT chunk 3 again: status %d, body %s", r.status, r.body)
	}
	infos, err := srv.store.List(ctx, "proj_x/rec_y/chunks/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var got []string
	for _, info := range infos {
		got = append(got, fmt.Sprintf("%s:%d", strings.TrimPrefix(info.Key, prefix), info.Size))
	}
	if want := "[1.opus:50 2.opus:100 3.opus:2]"; fmt.Sprint(got) != want {
		t.Errorf("chunks = %v, want %s", got, want)
	}

	r = sendRaw(t, srv, putHead(chunk("4"), testType, 101), bytes.Repeat([]byte("4"), 101))
	requireError(t, "chunk over max size", r, http.StatusRequestEntityTooLarge,
		"payload_too_large")

	rejected := []struct {
		name string
		head string
	}{
		{"value with slash", putHead(chunk("4/5"), testType, 1)},
		{"value with dot-dot", putHead(chunk("4/../../../med_z/audio"), testType, 1)},
		{"empty value", putHead(chunk(""), testType, 1)},
		{"encoded slash in value", putHead(chunk("4%2F5"), testType, 1)},
		{"placeholder left in", putHead(chunk("%7Bchunk_number%7D"), testType, 1)},
		{"wrong Content-Type", putHead(chunk("4"), "audio/wav", 1)},
		{"other prefix", putHead(strings.Replace(chunk("4"), "rec_y/chunks", "rec_z/chunks", 1),
			testType, 1)},
		{"other suffix", putHead(strings.Replace(chunk("4"), ".opus?", ".wav?", 1), testType, 1)},
		{"changed max size", putHead(withQuery(t, chunk("4"), "max_size", "1000"), testType, 1)},
		{"changed prefix parameter", putHead(withQuery(t, strings.Replace(chunk("4"),
			"rec_y", "rec_z", 1), "prefix", "proj_x/rec_z/chunks/chunk_"), testType, 1)},
		{"GET", "GET " + chunk("1") + " HTTP/1.1"},
		{"word", putHead(chunk("abc"), testType, 1)},
		{"zero", putHead(chunk("0"), testType, 1)},
		{"leading zero", putHead(chunk("04"), testType, 1)},
		{"negative", putHead(chunk("-4"), testType, 1)},
		{"over the largest number", putHead(chunk(fmt.Sprint(disk.MaxPrefixNumber+1)), testType, 1)},
	}
	for _, tc := range rejected {
		r := sendRaw(t, srv, tc.head, []byte("4"))
		requireError(t, tc.name, r, http.StatusForbidden, "forbidden")
	}
	if _, err := srv.store.Stat(ctx, "proj_x/rec_y/chunks/chunk_4.opus"); !errors.Is(err,
		blob.ErrNotFound) {
		t.Errorf("Stat of chunk 4: error = %v, want blob.ErrNotFound", err)
	}
	infos, err = srv.store.List(ctx, "proj_x/rec_y/chunks/")
	if err != nil || len(infos) != 3 {
		t.Errorf("List after the rejected PUTs: %d chunks, error %v; want the 3 accepted", len(infos), err)
	}

	// The largest number is accepted; once the prefix is sealed, no
	// chunk is, not even one sent before.
	last := fmt.Sprint(disk.MaxPrefixNumber)
	r = sendRaw(t, srv, putHead(chunk(last), testType, 1), []byte("9"))
	if r.status != http.StatusOK {
		t.Fatalf("PUT chunk %s: status %d, body %s", last, r.status, r.body)
	}
	if err := srv.store.Seal(ctx, prefix); err != nil {
		t.Fatalf("Seal prefix: %v", err)
	}
	for _, n := range []string{"1", "5"} {
		r = sendRaw(t, srv, putHead(chunk(n), testType, 1), []byte(n))
		requireError(t, "chunk "+n+" after the prefix seal", r, http.StatusConflict, "conflict")
	}
}

func TestPrefixSignerRejectsBadArguments(t *testing.T) {
	srv := newServer(t, 1000)
	ctx := context.Background()
	later := time.Now().Add(time.Hour)
	tests := []struct {
		name                              string
		prefix, placeholder, suffix, ctyp string
		maxSize                           int64
		expires                           time.Time
	}{
		{"dot-dot prefix", "proj_x/../", "{n}", "", testType, 10, later},
		{"absolute prefix", "/proj_x/", "{n}", "", testType, 10, later},
		{"placeholder with slash", "p/", "{a/b}", "", testType, 10, later},
		{"placeholder with query", "p/", "{a?b}", "", testType, 10, later},
		{"empty placeholder", "p/", "", "", testType, 10, later},
		{"suffix with backslash", "p/", "{n}", `\x`, testType, 10, later},
		{"empty content type", "p/", "{n}", "", "", 10, later},
		{"zero max size", "p/", "{n}", "", testType, 0, later},
		{"max size over store limit", "p/", "{n}", "", testType, 1001, later},
		{"past expiry", "p/", "{n}", "", testType, 10, time.Now().Add(-time.Second)},
	}
	for _, tc := range tests {
		_, err := srv.store.PresignPutPrefix(ctx, tc.prefix, tc.placeholder, tc.suffix, tc.ctyp,
			tc.maxSize, tc.expires)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestMaxSize(t *testing.T) {
	srv := newServer(t, 1000)
	ctx := context.Background()
	_, err := srv.store.PresignPut(ctx, testKey, blob.PutOptions{
		ContentType: testType, ContentLength: 1001, Expires: time.Now().Add(time.Hour),
	})
	if err == nil {
		t.Errorf("PresignPut over MaxSize: no error")
	}
	err = srv.store.Put(ctx, testKey, bytes.NewReader(make([]byte, 1001)), 1001, testType)
	if err == nil {
		t.Errorf("Put over MaxSize: no error")
	}
	err = srv.store.Put(ctx, testKey, bytes.NewReader(make([]byte, 1000)), 1000, testType)
	if err != nil {
		t.Errorf("Put of exactly MaxSize: %v", err)
	}
}

func TestStoreRejectsUnsafeKeys(t *testing.T) {
	srv := newServer(t, 0)
	ctx := context.Background()
	for _, key := range []string{
		"", "/etc/passwd", "../x", "a/../../x", "a//b", "a/", "a/./b", `a\b`, "a\x00b",
		"a b", "a%2fb", "ä", strings.Repeat("a", 256), strings.Repeat("a/", 513) + "a",
	} {
		if err := srv.store.Put(ctx, key, strings.NewReader("x"), 1, testType); err == nil {
			t.Errorf("Put(%q): no error", key)
		}
		if _, err := srv.store.Stat(ctx, key); err == nil || errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Stat(%q): error = %v, want a key error", key, err)
		}
		if _, err := srv.store.PresignPut(ctx, key, blob.PutOptions{ContentType: testType,
			ContentLength: 1, Expires: time.Now().Add(time.Hour)}); err == nil {
			t.Errorf("PresignPut(%q): no error", key)
		}
	}
	for _, prefix := range []string{"../", "/a", "a/../", `a\`} {
		if _, err := srv.store.List(ctx, prefix); err == nil {
			t.Errorf("List(%q): no error", prefix)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  disk.Config
	}{
		{"no dir", disk.Config{PublicURL: "http://127.0.0.1:1", Secret: testSecret}},
		{"relative URL", disk.Config{Dir: dir, PublicURL: "/uploads", Secret: testSecret}},
		{"trailing slash", disk.Config{Dir: dir, PublicURL: "http://127.0.0.1:1/",
			Secret: testSecret}},
		{"ftp URL", disk.Config{Dir: dir, PublicURL: "ftp://127.0.0.1", Secret: testSecret}},
		{"short secret", disk.Config{Dir: dir, PublicURL: "http://127.0.0.1:1",
			Secret: []byte("short")}},
		{"negative max size", disk.Config{Dir: dir, PublicURL: "http://127.0.0.1:1",
			Secret: testSecret, MaxSize: -1}},
	}
	for _, tc := range tests {
		if s, err := disk.New(tc.cfg); err == nil {
			_ = s.Close()
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestSignedURLUsesPublicURL(t *testing.T) {
	s, err := disk.New(disk.Config{Dir: t.TempDir(), PublicURL: "https://media.example:8443/base",
		Secret: testSecret})
	if err != nil {
		t.Fatalf("disk.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	u, err := s.PresignGet(context.Background(), testKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	want := "https://media.example:8443/base/uploads/" + testKey + "?"
	if !strings.HasPrefix(u.URL, want) {
		t.Errorf("URL %q does not start with %q", u.URL, want)
	}
}

// tempFiles returns the names in the store's temp folder.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatalf("read temp folder: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestCutConnectionLeavesNoObject(t *testing.T) {
	srv := newServer(t, 0)
	const size = 1 << 20
	signed, err := srv.store.PresignPut(context.Background(), testKey, blob.PutOptions{
		ContentType: testType, ContentLength: size, Expires: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.url, "http://"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	head := putHead(target(t, signed.URL), testType, size) + "\r\nHost: bota.test\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatalf("write head: %v", err)
	}
	if _, err := conn.Write(make([]byte, size/2)); err != nil {
		t.Fatalf("write half the body: %v", err)
	}
	// Wait until the server has started the temp file, then cut.
	deadline := time.Now().Add(10 * time.Second)
	for len(tempFiles(t, srv.dir)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(tempFiles(t, srv.dir)) == 0 {
		t.Fatalf("no temp file appeared while the body was sent")
	}
	if err := conn.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	deadline = time.Now().Add(10 * time.Second)
	for len(tempFiles(t, srv.dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if names := tempFiles(t, srv.dir); len(names) > 0 {
		t.Errorf("temp files left after the cut: %v", names)
	}
	if _, err := srv.store.Stat(context.Background(), testKey); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat after the cut: error = %v, want blob.ErrNotFound", err)
	}
}

func TestSweepTemp(t *testing.T) {
	srv := newServer(t, 0)
	tmp := filepath.Join(srv.dir, "tmp")
	old := time.Now().Add(-2 * time.Hour)
	for _, name := range []string{"put-old1", "put-old2", "put-new"} {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		if strings.Contains(name, "old") {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatalf("chtimes %s: %v", name, err)
			}
		}
	}
	n, err := srv.store.SweepTemp(time.Hour)
	if err != nil {
		t.Fatalf("SweepTemp: %v", err)
	}
	if n != 2 {
		t.Errorf("SweepTemp removed %d files, want 2", n)
	}
	if got := fmt.Sprint(tempFiles(t, srv.dir)); got != "[put-new]" {
		t.Errorf("temp files after SweepTemp = %s, want [put-new]", got)
	}
}

// patternReader yields n bytes of a fixed pattern without holding them.
type patternReader struct{ n, off int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		b[i] = byte((p.off + int64(i)) * 7 % 251)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func TestLargeUploadMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 200 MiB")
	}
	srv := newServer(t, 0)
	const size = 200 << 20
	signed, err := srv.store.PresignPut(context.Background(), testKey, blob.PutOptions{
		ContentType: testType, ContentLength: size, Expires: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	rssBefore := procStatusKiB(t, "VmRSS")
	peakHeap := before.HeapInuse
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			peakHeap = max(peakHeap, m.HeapInuse)
		}
	}()

	req, err := http.NewRequest(http.MethodPut, signed.URL, &patternReader{n: size})
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", testType)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatalf("PUT: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT status %d", resp.StatusCode)
	}
	elapsed := time.Since(start)
	rssAfter := procStatusKiB(t, "VmRSS")
	heapDelta := int64(peakHeap) - int64(before.HeapInuse)
	t.Logf("200 MiB PUT in %s: peak Go heap in use +%.1f MiB, RSS %+.1f MiB (%d -> %d KiB)",
		elapsed.Round(time.Millisecond), float64(heapDelta)/(1<<20),
		float64(rssAfter-rssBefore)/1024, rssBefore, rssAfter)
	if heapDelta > 32<<20 {
		t.Errorf("Go heap grew by %d MiB during a 200 MiB upload, want under 32 MiB",
			heapDelta>>20)
	}

	// The stored bytes are the sent ones.
	f, err := srv.store.Open(context.Background(), testKey)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer func() { _ = f.Close() }()
	got, want := sha256.New(), sha256.New()
	if _, err := io.Copy(got, f); err != nil {
		t.Fatalf("hash stored object: %v", err)
	}
	if _, err := io.Copy(want, &patternReader{n: size}); err != nil {
		t.Fatalf("hash pattern: %v", err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Errorf("stored object differs from the uploaded bytes")
	}
}

// procStatusKiB reads a "Name: N kB" line of /proc/self/status; 0 where
// there is no /proc.
func procStatusKiB(t *testing.T, name string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib); err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return kib
		}
	}
	return 0
}

func TestHandlerBehindServeMux(t *testing.T) {
	dir := t.TempDir()
	mux := http.NewServeMux()
	ts := httptest.NewUnstartedServer(mux)
	store, err := disk.New(disk.Config{Dir: dir, PublicURL: "http://" + ts.Listener.Addr().String(),
		Secret: testSecret, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("disk.New: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	mux.Handle(disk.UploadsPath, store.Handler())
	ts.Start()
	t.Cleanup(ts.Close)

	ctx := context.Background()
	signed, err := store.PresignPut(ctx, testKey, blob.PutOptions{
		ContentType: testType, ContentLength: 3, Expires: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}
	req, err := http.NewRequest(http.MethodPut, signed.URL, strings.NewReader("abc"))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", testType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT through ServeMux: status %d", resp.StatusCode)
	}
	if info, err := store.Stat(ctx, testKey); err != nil || info.Size != 3 {
		t.Errorf("Stat = %+v, %v; want size 3", info, err)
	}
}

func TestConcurrentPutsKeepTypeWithObject(t *testing.T) {
	srv := newServer(t, 0)
	ctx := context.Background()
	const writers = 8
	errs := make(chan error, writers)
	for i := 1; i <= writers; i++ {
		go func() {
			data := bytes.Repeat([]byte{'x'}, i)
			errs <- srv.store.Put(ctx, testKey, bytes.NewReader(data), int64(i),
				fmt.Sprintf("audio/x-%d", i))
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Errorf("Put: %v", err)
		}
	}

	info, err := srv.store.Stat(ctx, testKey)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	signed, err := srv.store.PresignGet(ctx, testKey, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	r := sendRaw(t, srv, "GET "+target(t, signed.URL)+" HTTP/1.1", nil)
	if want := fmt.Sprintf("audio/x-%d", info.Size); r.header.Get("Content-Type") != want {
		t.Errorf("object of %d bytes has Content-Type %q, want %q", info.Size,
			r.header.Get("Content-Type"), want)
	}
	if names := tempFiles(t, srv.dir); len(names) != 0 {
		t.Errorf("temp files left: %v", names)
	}
}
