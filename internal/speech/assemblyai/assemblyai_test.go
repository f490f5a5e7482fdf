package assemblyai_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/speech/assemblyai"
)

// completedTranscript is a finished transcript with speaker labels; times
// are milliseconds as AssemblyAI sends them.
const completedTranscript = `{
  "id": "tr_123", "status": "completed", "language_code": "en_us",
  "text": "Good morning. Morning, Ann.", "confidence": 0.93, "audio_duration": 5,
  "words": [
    {"text": "Good", "start": 250, "end": 500, "confidence": 0.99, "speaker": "A"},
    {"text": "morning.", "start": 510, "end": 900, "confidence": 0.97, "speaker": "A"},
    {"text": "Morning,", "start": 2000, "end": 2400, "confidence": 0.9, "speaker": "B"},
    {"text": "Ann.", "start": 2410, "end": 2800, "confidence": 0.86, "speaker": "B"}
  ],
  "utterances": [
    {"confidence": 0.98, "start": 250, "end": 900, "speaker": "A", "text": "Good morning.",
     "words": [
       {"text": "Good", "start": 250, "end": 500, "confidence": 0.99, "speaker": "A"},
       {"text": "morning.", "start": 510, "end": 900, "confidence": 0.97, "speaker": "A"}]},
    {"confidence": 0.88, "start": 2000, "end": 2800, "speaker": "B", "text": "Morning, Ann.",
     "words": [
       {"text": "Morning,", "start": 2000, "end": 2400, "confidence": 0.9, "speaker": "B"},
       {"text": "Ann.", "start": 2410, "end": 2800, "confidence": 0.86, "speaker": "B"}]}
  ],
  "error": null
}`

// fakeService speaks the upload, create and poll endpoints. Each poll
// returns the next of polls; the last one repeats.
type fakeService struct {
	polls    []string
	reply    map[string]func(w http.ResponseWriter) bool // path → override
	mu       sync.Mutex
	uploaded []byte
	create   map[string]any
	auths    []string
	pollN    int
}

func (f *fakeService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	if override, ok := f.reply[r.Method+" "+r.URL.Path]; ok && override(w) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2/upload":
		f.uploaded, _ = io.ReadAll(r.Body)
		io.WriteString(w, `{"upload_url": "https://cdn.example.invalid/upload/abc"}`)
	case r.Method == http.MethodPost && r.URL.Path == "/v2/transcript":
		if err := json.NewDecoder(r.Body).Decode(&f.create); err != nil {
			http.Error(w, `{"error": "bad json"}`, http.StatusBadRequest)
			return
		}
		io.WriteString(w, `{"id": "tr_123", "status": "queued"}`)
	case r.Method == http.MethodGet && r.URL.Path == "/v2/transcript/tr_123":
		io.WriteString(w, f.polls[min(f.pollN, len(f.polls)-1)])
		f.pollN++
	default:
		http.Error(w, `{"error": "not found"}`, http.StatusNotFound)
	}
}

func newService(t *testing.T, polls ...string) (*fakeService, *httptest.Server) {
	f := &fakeService{polls: polls, reply: map[string]func(http.ResponseWriter) bool{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func audioFile(t *testing.T) (string, []byte) {
	t.Helper()
	data := []byte("OggS fake opus bytes for the wire test")
	path := filepath.Join(t.TempDir(), "rec.opus")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func engineFor(srv *httptest.Server) *assemblyai.Engine {
	return assemblyai.New(assemblyai.Config{BaseURL: srv.URL, APIKey: "aai-key",
		PollInterval: time.Millisecond})
}

func TestTranscribePollsUntilCompleted(t *testing.T) {
	f, srv := newService(t, `{"id": "tr_123", "status": "queued"}`,
		`{"id": "tr_123", "status": "processing"}`, completedTranscript)
	path, data := audioFile(t)
	engine := engineFor(srv)
	if engine.Name() != "assemblyai" {
		t.Errorf("Name = %q", engine.Name())
	}

	res, err := engine.Transcribe(context.Background(),
		speech.Request{Path: path, Language: "en-US", Diarization: true})
	if err != nil {
		t.Fatalf("Transcribe: %v", err)
	}

	if !bytes.Equal(f.uploaded, data) {
		t.Errorf("uploaded %q", f.uploaded)
	}
	for i, a := range f.auths {
		if a != "aai-key" {
			t.Errorf("request %d authorization = %q", i, a)
		}
	}
	if f.create["audio_url"] != "https://cdn.example.invalid/upload/abc" ||
		f.create["speaker_labels"] != true || f.create["language_code"] != "en_us" {
		t.Errorf("create body = %v", f.create)
	}
	if f.pollN != 3 {
		t.Errorf("polled %d times, want 3", f.pollN)
	}

	if res.Text != "Good morning. Morning, Ann." || res.Language != "en-US" ||
		res.DurationMs != 5000 || res.Confidence != 0.93 {
		t.Errorf("result = %q, %q, %d ms, confidence %v",
			res.Text, res.Language, res.DurationMs, res.Confidence)
	}
	if len(res.Segments) != 2 {
		t.Fatalf("got %d segments, want 2", len(res.Segments))
	}
	first, second := res.Segments[0], res.Segments[1]
	if first.Speaker != "SPEAKER_0" || second.Speaker != "SPEAKER_1" {
		t.Errorf("speakers = %q, %q", first.Speaker, second.Speaker)
	}
	if second.Start != 2.0 || second.End != 2.8 || second.Text != "Morning, Ann." {
		t.Errorf("second segment = %+v", second)
	}
	if w := second.Words[1]; w.Word != "Ann." || w.Start != 2.41 || w.End != 2.8 || w.Confidence != 0.86 {
		t.Errorf("word = %+v", w)
	}
}

func TestTranscribeWithoutLanguageOrDiarization(t *testing.T) {
	f, srv := newService(t, completedTranscript)
	path, _ := audioFile(t)
	res, err := engineFor(srv).Transcribe(context.Background(), speech.Request{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.create["language_code"]; ok || f.create["language_detection"] != true {
		t.Errorf("create body = %v, want language_detection without language_code", f.create)
	}
	for i, seg := range res.Segments {
		if seg.Speaker != "" {
			t.Errorf("segment %d Speaker = %q, want none", i, seg.Speaker)
		}
	}
}

func TestTranscribeFailedTranscript(t *testing.T) {
	_, srv := newService(t, `{"id": "tr_123", "status": "processing"}`,
		`{"id": "tr_123", "status": "error", "error": "Transcoding failed. File does not appear to contain audio. File type is text/plain (ASCII text)."}`)
	path, _ := audioFile(t)
	_, err := engineFor(srv).Transcribe(context.Background(), speech.Request{Path: path})
	var se *speech.Error
	if !errors.As(err, &se) {
		t.Fatalf("error = %v, want *speech.Error", err)
	}
	if se.Code != speech.CodeAudioCorrupt || se.Retryable {
		t.Errorf("error = %+v, want non-retryable audio_corrupt", se)
	}
}

func TestTranscribeErrorReplies(t *testing.T) {
	cases := []struct {
		name       string
		route      string
		status     int
		header     http.Header
		body       string
		retryable  bool
		retryAfter time.Duration
	}{
		{"bad key on upload", "POST /v2/upload", 401, nil,
			`{"error": "Authentication error, API token missing/invalid"}`, false, 0},
		{"bad request on create", "POST /v2/transcript", 400, nil,
			`{"error": "Invalid language_code"}`, false, 0},
		{"rate limited on create", "POST /v2/transcript", 429, http.Header{"Retry-After": {"12"}},
			`{"error": "Too many requests"}`, true, 12 * time.Second},
		{"server error on poll", "GET /v2/transcript/tr_123", 500, nil,
			`{"error": "Internal server error"}`, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newService(t, completedTranscript)
			f.reply[tc.route] = func(w http.ResponseWriter) bool {
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
				return true
			}
			path, _ := audioFile(t)
			_, err := engineFor(srv).Transcribe(context.Background(), speech.Request{Path: path})
			var se *speech.Error
			if !errors.As(err, &se) {
				t.Fatalf("error = %v, want *speech.Error", err)
			}
			if se.Code != speech.CodeProcessingError {
				t.Errorf("Code = %q", se.Code)
			}
			if se.Retryable != tc.retryable {
				t.Errorf("Retryable = %v, want %v (%v)", se.Retryable, tc.retryable, se)
			}
			delay, ok := speech.RetryAfter(err)
			if ok != (tc.retryAfter > 0) || delay != tc.retryAfter {
				t.Errorf("RetryAfter = %v, %v, want %v", delay, ok, tc.retryAfter)
			}
		})
	}
}

func TestTranscribeCanceledWhilePolling(t *testing.T) {
	_, srv := newService(t, `{"id": "tr_123", "status": "processing"}`)
	path, _ := audioFile(t)
	engine := assemblyai.New(assemblyai.Config{BaseURL: srv.URL, APIKey: "k",
		PollInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := engine.Transcribe(ctx, speech.Request{Path: path})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want context.DeadlineExceeded", err)
	}
	if !speech.AsError(err).Retryable {
		t.Error("cancellation error is not retryable")
	}
}
