// Package blobtest is the conformance suite that every blob.Store passes.
// It uploads and downloads through the store's signed URLs over real HTTP,
// so a store under test must be reachable: the disk store behind an HTTP
// server with its handler, the S3 store on a real S3 server.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/blob"
)

// NewStore returns an empty store for one test. It registers any cleanup
// with t.
type NewStore func(t testing.TB) blob.Store

// Run runs the conformance suite. Each subtest gets a fresh store from
// newStore and may run in parallel with the others.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s blob.Store)
	}{
		{"PresignedPutThenGet", testPresignedPutThenGet},
		{"PresignedPutEmptyObject", testPresignedPutEmptyObject},
		{"PutWrongContentType", testPutWrongContentType},
		{"PutWrongContentLength", testPutWrongContentLength},
		{"TamperedSignature", testTamperedSignature},
		{"PutURLRejectsGet", testPutURLRejectsGet},
		{"ExpiredURLs", testExpiredURLs},
		{"PresignPastExpiry", testPresignPastExpiry},
		{"ServerPutOpenStat", testServerPutOpenStat},
		{"ServerPutWrongSize", testServerPutWrongSize},
		{"Overwrite", testOverwrite},
		{"MissingObject", testMissingObject},
		{"Delete", testDelete},
		{"ListOrder", testListOrder},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t))
		})
	}
}

const (
	testKey  = "proj_x/rec_y/med_z/audio.opus"
	testType = "audio/opus"
)

var httpClient = &http.Client{Timeout: 60 * time.Second}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// randomBytes returns n random bytes, so that a wrong byte anywhere shows.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("rand.Read: %v", err)
	}
	return b
}

// doPut sends body to a signed PUT URL with the signed headers, but
// contentType in place of the signed one. It returns the status and the
// response body.
func doPut(t *testing.T, u blob.SignedURL, body []byte, contentType string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodPut, u.URL,
		bytes.NewReader(body))
	if err != nil {
		t.Fatalf("new PUT request: %v", err)
	}
	for name, value := range u.Headers {
		req.Header.Set(name, value)
	}
	req.Header.Set("Content-Type", contentType)
	return send(t, req)
}

func doGet(t *testing.T, method, rawURL string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t), method, rawURL, nil)
	if err != nil {
		t.Fatalf("new %s request: %v", method, err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s response: %v", method, err)
	}
	return resp.StatusCode, resp.Header, body
}

func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := httpClient.Do(req)
	if err != nil {
		// A server may close the connection when it rejects a body whose
		// length breaks the declared one.
		t.Logf("%s %s: %v", req.Method, req.URL.Path, err)
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp.StatusCode, string(body)
}

func presignPut(t *testing.T, s blob.Store, key string, size int64) blob.SignedURL {
	t.Helper()
	u, err := s.PresignPut(ctxFor(t), key, blob.PutOptions{
		ContentType:   testType,
		ContentLength: size,
		Expires:       time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatalf("PresignPut(%q): %v", key, err)
	}
	return u
}

func presignGet(t *testing.T, s blob.Store, key string) blob.SignedURL {
	t.Helper()
	u, err := s.PresignGet(ctxFor(t), key, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("PresignGet(%q): %v", key, err)
	}
	return u
}

func put(t *testing.T, s blob.Store, key string, data []byte) {
	t.Helper()
	err := s.Put(ctxFor(t), key, bytes.NewReader(data), int64(len(data)), testType)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func readAll(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	rc, err := s.Open(ctxFor(t), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b
}

func requireNotFound(t *testing.T, s blob.Store, key string) {
	t.Helper()
	_, err := s.Stat(ctxFor(t), key)
	if !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat(%q) error = %v, want blob.ErrNotFound", key, err)
	}
}

func requireRejected(t *testing.T, what string, status int, body string) {
	t.Helper()
	if status == 0 {
		return // connection closed by the server: also a rejection
	}
	if status != http.StatusForbidden {
		t.Errorf("%s: status %d, want 403; body: %s", what, status, body)
	}
}

func testPresignedPutThenGet(t *testing.T, s blob.Store) {
	data := randomBytes(t, 300<<10+7)
	u := presignPut(t, s, testKey, int64(len(data)))
	if !strings.HasPrefix(u.URL, "http://") && !strings.HasPrefix(u.URL, "https://") {
		t.Errorf("PresignPut URL %q is not absolute", u.URL)
	}
	if got := u.Headers["Content-Type"]; got != testType {
		t.Errorf("PresignPut Headers[Content-Type] = %q, want %q", got, testType)
	}

	status, body := doPut(t, u, data, testType)
	if status != http.StatusOK {
		t.Fatalf("PUT status %d, want 200; body: %s", status, body)
	}

	info, err := s.Stat(ctxFor(t), testKey)
	if err != nil {
		t.Fatalf("Stat after PUT: %v", err)
	}
	if info.Key != testKey {
		t.Errorf("Stat Key = %q, want %q", info.Key, testKey)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Stat Size = %d, want %d", info.Size, len(data))
	}
	if age := time.Since(info.ModTime); age < -time.Minute || age > time.Minute {
		t.Errorf("Stat ModTime = %v, not within a minute of now", info.ModTime)
	}

	g := presignGet(t, s, testKey)
	status, header, got := doGet(t, http.MethodGet, g.URL)
	if status != http.StatusOK {
		t.Fatalf("GET status %d, want 200; body: %s", status, got)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("GET returned %d bytes that differ from the %d uploaded", len(got), len(data))
	}
	if cl := header.Get("Content-Length"); cl != fmt.Sprint(len(data)) {
		t.Errorf("GET Content-Length = %q, want %d", cl, len(data))
	}
	if ct := header.Get("Content-Type"); ct != testType {
		t.Errorf("GET Content-Type = %q, want %q", ct, testType)
	}
	if !bytes.Equal(readAll(t, s, testKey), data) {
		t.Errorf("Open returned bytes that differ from the uploaded ones")
	}
}

func testPresignedPutEmptyObject(t *testing.T, s blob.Store) {
	u := presignPut(t, s, testKey, 0)
	status, body := doPut(t, u, nil, testType)
	if status != http.StatusOK {
		t.Fatalf("PUT of 0 bytes: status %d, want 200; body: %s", status, body)
	}
	info, err := s.Stat(ctxFor(t), testKey)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Size != 0 {
		t.Errorf("Stat Size = %d, want 0", info.Size)
	}
}

func testPutWrongContentType(t *testing.T, s blob.Store) {
	data := randomBytes(t, 1000)
	u := presignPut(t, s, testKey, int64(len(data)))
	status, body := doPut(t, u, data, "audio/wav")
	requireRejected(t, "PUT with another Content-Type", status, body)
	requireNotFound(t, s, testKey)
}

func testPutWrongContentLength(t *testing.T, s blob.Store) {
	data := randomBytes(t, 1000)
	u := presignPut(t, s, testKey, int64(len(data)))

	status, body := doPut(t, u, data[:999], testType)
	requireRejected(t, "PUT of one byte less", status, body)
	requireNotFound(t, s, testKey)

	longer := append(append([]byte(nil), data...), 'x')
	status, body = doPut(t, u, longer, testType)
	requireRejected(t, "PUT of one byte more", status, body)
	requireNotFound(t, s, testKey)
}

func testTamperedSignature(t *testing.T, s blob.Store) {
	data := randomBytes(t, 100)
	u := presignPut(t, s, testKey, int64(len(data)))
	tampered := u
	tampered.URL = tamper(t, u.URL)
	status, body := doPut(t, tampered, data, testType)
	requireRejected(t, "PUT with a changed signature", status, body)
	requireNotFound(t, s, testKey)

	// Signed for one key, sent to another.
	other := u
	other.URL = strings.Replace(u.URL, "audio.opus", "other.opus", 1)
	status, body = doPut(t, other, data, testType)
	requireRejected(t, "PUT to another key", status, body)
	requireNotFound(t, s, "proj_x/rec_y/med_z/other.opus")
}

// tamper changes one character of the signature query parameter.
func tamper(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse signed URL: %v", err)
	}
	q := u.Query()
	for name, values := range q {
		if !strings.Contains(strings.ToLower(name), "signature") || len(values) != 1 {
			continue
		}
		sig := []byte(values[0])
		if sig[0] == 'a' {
			sig[0] = 'b'
		} else {
			sig[0] = 'a'
		}
		q.Set(name, string(sig))
		u.RawQuery = q.Encode()
		return u.String()
	}
	t.Fatalf("signed URL has no signature parameter")
	return ""
}

func testPutURLRejectsGet(t *testing.T, s blob.Store) {
	data := randomBytes(t, 100)
	put(t, s, testKey, data)
	u := presignPut(t, s, testKey, int64(len(data)))
	status, _, body := doGet(t, http.MethodGet, u.URL)
	requireRejected(t, "GET on a PUT URL", status, string(body))
}

func testExpiredURLs(t *testing.T, s blob.Store) {
	data := randomBytes(t, 100)
	put(t, s, testKey, data)
	const newKey = "proj_x/rec_y/med_z/late.opus"

	expires := time.Now().Add(time.Second)
	putURL, err := s.PresignPut(ctxFor(t), newKey, blob.PutOptions{
		ContentType: testType, ContentLength: int64(len(data)), Expires: expires,
	})
	if err != nil {
		t.Fatalf("PresignPut: %v", err)
	}
	getURL, err := s.PresignGet(ctxFor(t), testKey, expires)
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	// Signatures carry whole seconds; wait until the expiry is surely past.
	time.Sleep(time.Until(expires) + 2*time.Second)

	status, body := doPut(t, putURL, data, testType)
	requireRejected(t, "PUT after expiry", status, body)
	requireNotFound(t, s, newKey)

	status, _, got := doGet(t, http.MethodGet, getURL.URL)
	requireRejected(t, "GET after expiry", status, string(got))
}

func testPresignPastExpiry(t *testing.T, s blob.Store) {
	past := time.Now().Add(-time.Minute)
	_, err := s.PresignPut(ctxFor(t), testKey, blob.PutOptions{
		ContentType: testType, ContentLength: 1, Expires: past,
	})
	if err == nil {
		t.Errorf("PresignPut with a past expiry: no error")
	}
	if _, err := s.PresignGet(ctxFor(t), testKey, past); err == nil {
		t.Errorf("PresignGet with a past expiry: no error")
	}
}

func testServerPutOpenStat(t *testing.T, s blob.Store) {
	data := randomBytes(t, 1<<20+3)
	put(t, s, testKey, data)
	info, err := s.Stat(ctxFor(t), testKey)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Stat Size = %d, want %d", info.Size, len(data))
	}
	if !bytes.Equal(readAll(t, s, testKey), data) {
		t.Errorf("Open returned bytes that differ from the Put ones")
	}

	status, header, got := doGet(t, http.MethodGet, presignGet(t, s, testKey).URL)
	if status != http.StatusOK {
		t.Fatalf("GET status %d, want 200", status)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("GET returned bytes that differ from the Put ones")
	}
	if ct := header.Get("Content-Type"); ct != testType {
		t.Errorf("GET Content-Type = %q, want %q", ct, testType)
	}
}

func testServerPutWrongSize(t *testing.T, s blob.Store) {
	data := randomBytes(t, 1000)
	err := s.Put(ctxFor(t), testKey, bytes.NewReader(data[:500]), int64(len(data)), testType)
	if err == nil {
		t.Errorf("Put of a reader shorter than size: no error")
	}
	requireNotFound(t, s, testKey)

	err = s.Put(ctxFor(t), testKey, bytes.NewReader(data), 500, testType)
	if err == nil {
		t.Errorf("Put of a reader longer than size: no error")
	}
	requireNotFound(t, s, testKey)
}

func testOverwrite(t *testing.T, s blob.Store) {
	put(t, s, testKey, randomBytes(t, 2000))
	second := randomBytes(t, 700)
	put(t, s, testKey, second)
	if got := readAll(t, s, testKey); !bytes.Equal(got, second) {
		t.Errorf("after a second Put, Open returned %d bytes, want the second %d", len(got),
			len(second))
	}
}

func testMissingObject(t *testing.T, s blob.Store) {
	requireNotFound(t, s, testKey)
	_, err := s.Open(ctxFor(t), testKey)
	if !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open of a missing key: error = %v, want blob.ErrNotFound", err)
	}
	status, _, body := doGet(t, http.MethodGet, presignGet(t, s, testKey).URL)
	if status != http.StatusNotFound {
		t.Errorf("GET of a missing key: status %d, want 404; body: %s", status, body)
	}
}

func testDelete(t *testing.T, s blob.Store) {
	put(t, s, testKey, randomBytes(t, 10))
	if err := s.Delete(ctxFor(t), testKey); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	requireNotFound(t, s, testKey)
	if err := s.Delete(ctxFor(t), testKey); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	infos, err := s.List(ctxFor(t), "proj_x/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(infos) != 0 {
		t.Errorf("List after Delete returned %d objects, want 0", len(infos))
	}
}

func testListOrder(t *testing.T, s blob.Store) {
	// Put in an order unlike the sorted one. "a.c" sorts before "a/b"
	// because '.' is 0x2E and '/' is 0x2F.
	keys := map[string]int{
		"proj_x/rec_2/c/d/e.opus": 5,
		"proj_x/rec_1/a/b":        3,
		"proj_x/rec_1/a.c":        4,
		"proj_x/rec_1/a-z":        1,
		"proj_x/rec_10/z":         2,
		"proj_y/rec_1/other":      6,
	}
	for key, n := range keys {
		put(t, s, key, randomBytes(t, n))
	}

	tests := []struct {
		prefix string
		want   []string
	}{
		{"proj_x/", []string{
			"proj_x/rec_1/a-z", "proj_x/rec_1/a.c", "proj_x/rec_1/a/b",
			"proj_x/rec_10/z", "proj_x/rec_2/c/d/e.opus",
		}},
		{"proj_x/rec_1/", []string{"proj_x/rec_1/a-z", "proj_x/rec_1/a.c", "proj_x/rec_1/a/b"}},
		{"proj_x/rec_1", []string{
			"proj_x/rec_1/a-z", "proj_x/rec_1/a.c", "proj_x/rec_1/a/b", "proj_x/rec_10/z",
		}},
		{"proj_x/rec_1/a", []string{"proj_x/rec_1/a-z", "proj_x/rec_1/a.c", "proj_x/rec_1/a/b"}},
		{"proj_z/", nil},
		{"", []string{
			"proj_x/rec_1/a-z", "proj_x/rec_1/a.c", "proj_x/rec_1/a/b",
			"proj_x/rec_10/z", "proj_x/rec_2/c/d/e.opus", "proj_y/rec_1/other",
		}},
	}
	for _, tc := range tests {
		infos, err := s.List(ctxFor(t), tc.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", tc.prefix, err)
			continue
		}
		var got []string
		for _, info := range infos {
			got = append(got, info.Key)
			if want := int64(keys[info.Key]); info.Size != want {
				t.Errorf("List(%q): %s has Size %d, want %d", tc.prefix, info.Key, info.Size, want)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
}
