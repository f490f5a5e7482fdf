package deepgram_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/speech/deepgram"
)

// listenReply is a Deepgram pre-recorded reply with diarization and
// utterances for two speakers, trimmed to the fields the engine reads plus
// a few it ignores.
const listenReply = `{
  "metadata": {"request_id": "5e0b2c1a", "duration": 4.25, "channels": 1, "models": ["nova-2"]},
  "results": {
    "channels": [{
      "detected_language": "en",
      "alternatives": [{
        "transcript": "Hello there. Hi, Bob.",
        "confidence": 0.97,
        "words": [
          {"word": "hello", "start": 0.08, "end": 0.4, "confidence": 0.99, "speaker": 0, "speaker_confidence": 0.8, "punctuated_word": "Hello"},
          {"word": "there", "start": 0.4, "end": 0.9, "confidence": 0.98, "speaker": 0, "speaker_confidence": 0.8, "punctuated_word": "there."},
          {"word": "hi", "start": 2.1, "end": 2.4, "confidence": 0.95, "speaker": 1, "speaker_confidence": 0.7, "punctuated_word": "Hi,"},
          {"word": "bob", "start": 2.4, "end": 2.9, "confidence": 0.9, "speaker": 1, "speaker_confidence": 0.7, "punctuated_word": "Bob."}
        ]
      }]
    }],
    "utterances": [
      {"start": 0.08, "end": 0.9, "confidence": 0.985, "channel": 0, "transcript": "Hello there.", "speaker": 0, "id": "u1",
       "words": [
         {"word": "hello", "start": 0.08, "end": 0.4, "confidence": 0.99, "speaker": 0, "punctuated_word": "Hello"},
         {"word": "there", "start": 0.4, "end": 0.9, "confidence": 0.98, "speaker": 0, "punctuated_word": "there."}]},
      {"start": 2.1, "end": 2.9, "confidence": 0.925, "channel": 0, "transcript": "Hi, Bob.", "speaker": 1, "id": "u2",
       "words": [
         {"word": "hi", "start": 2.1, "end": 2.4, "confidence": 0.95, "speaker": 1, "punctuated_word": "Hi,"},
         {"word": "bob", "start": 2.4, "end": 2.9, "confidence": 0.9, "speaker": 1, "punctuated_word": "Bob."}]}
    ]
  }
}`

type capture struct {
	auth, contentType string
	query             url.Values
	body              []byte
}

func newServer(t *testing.T, status int, header http.Header, body string) (*httptest.Server, *capture) {
	t.Helper()
	got := &capture{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/listen" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		got.auth = r.Header.Get("Authorization")
		got.contentType = r.Header.Get("Content-Type")
		got.query = r.URL.Query()
		got.body, _ = io.ReadAll(r.Body)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, got
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

func TestTranscribeMapsUtterances(t *testing.T) {
	srv, got := newServer(t, http.StatusOK, nil, listenReply)
	path, data := audioFile(t)
	engine := deepgram.New(deepgram.Config{BaseURL: srv.URL, APIKey: "dg-key"})
	if engine.Name() != "deepgram" {
		t.Errorf("Name = %q", engine.Name())
	}

	res, err := engine.Transcribe(context.Background(), speech.Request{
		Path: path, ContentType: "audio/opus", Diarization: true})
	if err != nil {
		t.Fatalf("Transcribe: %v", err)
	}

	if got.auth != "Token dg-key" || got.contentType != "audio/opus" || !bytes.Equal(got.body, data) {
		t.Errorf("Authorization %q, Content-Type %q, body %q", got.auth, got.contentType, got.body)
	}
	wantQuery := map[string]string{"model": "nova-2", "smart_format": "true", "punctuate": "true",
		"diarize": "true", "utterances": "true", "detect_language": "true", "language": ""}
	for k, v := range wantQuery {
		if got.query.Get(k) != v {
			t.Errorf("query %s = %q, want %q", k, got.query.Get(k), v)
		}
	}

	if res.Text != "Hello there. Hi, Bob." || res.Language != "en" || res.DurationMs != 4250 {
		t.Errorf("Text %q, Language %q, DurationMs %d", res.Text, res.Language, res.DurationMs)
	}
	if res.Confidence != 0.97 {
		t.Errorf("Confidence = %v", res.Confidence)
	}
	if len(res.Segments) != 2 {
		t.Fatalf("got %d segments, want 2", len(res.Segments))
	}
	first, second := res.Segments[0], res.Segments[1]
	if first.Speaker != "SPEAKER_0" || second.Speaker != "SPEAKER_1" {
		t.Errorf("speakers = %q, %q", first.Speaker, second.Speaker)
	}
	if second.Text != "Hi, Bob." || second.Start != 2.1 || second.End != 2.9 || second.Confidence != 0.925 {
		t.Errorf("second segment = %+v", second)
	}
	if len(second.Words) != 2 {
		t.Fatalf("second segment has %d words", len(second.Words))
	}
	if w := second.Words[1]; w.Word != "Bob." || w.Start != 2.4 || w.End != 2.9 || w.Confidence != 0.9 {
		t.Errorf("word = %+v", w)
	}
}

func TestTranscribeWithoutDiarization(t *testing.T) {
	srv, got := newServer(t, http.StatusOK, nil, listenReply)
	path, _ := audioFile(t)
	engine := deepgram.New(deepgram.Config{BaseURL: srv.URL, APIKey: "k", Model: "nova-3"})
	res, err := engine.Transcribe(context.Background(), speech.Request{Path: path, Language: "en-US"})
	if err != nil {
		t.Fatal(err)
	}
	if got.query.Get("language") != "en-US" || got.query.Has("detect_language") ||
		got.query.Get("model") != "nova-3" {
		t.Errorf("query = %v", got.query)
	}
	if got.contentType != "application/octet-stream" {
		t.Errorf("Content-Type = %q", got.contentType)
	}
	for i, seg := range res.Segments {
		if seg.Speaker != "" {
			t.Errorf("segment %d Speaker = %q, want none without diarization", i, seg.Speaker)
		}
	}
}

func TestTranscribeErrorReplies(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		code       string
		retryable  bool
		retryAfter time.Duration
	}{
		{"corrupt audio", 400, nil,
			`{"err_code": "Bad Request", "err_msg": "Bad Request: failed to process audio: corrupt or unsupported data", "request_id": "r1"}`,
			speech.CodeAudioCorrupt, false, 0},
		{"bad request", 400, nil,
			`{"err_code": "Bad Request", "err_msg": "No such model/language/tier combination found.", "request_id": "r2"}`,
			speech.CodeProcessingError, false, 0},
		{"bad key", 401, nil,
			`{"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "r3"}`,
			speech.CodeProcessingError, false, 0},
		{"rate limited", 429, http.Header{"Retry-After": {"3"}},
			`{"err_code": "TOO_MANY_REQUESTS", "err_msg": "Too many requests."}`,
			speech.CodeProcessingError, true, 3 * time.Second},
		{"unavailable", 503, nil, `upstream down`, speech.CodeProcessingError, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newServer(t, tc.status, tc.header, tc.body)
			path, _ := audioFile(t)
			engine := deepgram.New(deepgram.Config{BaseURL: srv.URL, APIKey: "k"})
			_, err := engine.Transcribe(context.Background(), speech.Request{Path: path})
			var se *speech.Error
			if !errors.As(err, &se) {
				t.Fatalf("error = %v, want *speech.Error", err)
			}
			if se.Code != tc.code {
				t.Errorf("Code = %q, want %q", se.Code, tc.code)
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
