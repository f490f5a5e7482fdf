package whisper_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/speech/whisper"
)

// verboseReply is an OpenAI verbose_json reply with word and segment times.
const verboseReply = `{
  "task": "transcribe", "language": "english", "duration": 7.1,
  "text": " And Mister John Dashwood had then leisure to consider.",
  "segments": [
    {"id": 0, "seek": 0, "start": 0.0, "end": 3.2, "text": " And Mister John Dashwood",
     "tokens": [1, 2], "temperature": 0.0, "avg_logprob": -0.1,
     "compression_ratio": 1.1, "no_speech_prob": 0.01},
    {"id": 1, "seek": 0, "start": 3.4, "end": 6.0, "text": " had then leisure to consider.",
     "tokens": [3], "temperature": 0.0, "avg_logprob": -0.5,
     "compression_ratio": 1.1, "no_speech_prob": 0.02}
  ],
  "words": [
    {"word": "And", "start": 0.0, "end": 0.3}, {"word": "Mister", "start": 0.4, "end": 0.9},
    {"word": "John", "start": 1.0, "end": 1.5}, {"word": "Dashwood", "start": 1.6, "end": 3.2},
    {"word": "had", "start": 3.4, "end": 3.7}, {"word": "then", "start": 3.8, "end": 4.1},
    {"word": "leisure", "start": 4.2, "end": 4.8}, {"word": "to", "start": 4.9, "end": 5.0},
    {"word": "consider", "start": 5.1, "end": 6.0}
  ]
}`

type capture struct {
	auth, model, format, language, fileName, fileType string
	granularities                                     []string
	file                                              []byte
}

func newServer(t *testing.T, status int, header http.Header, body string) (*httptest.Server, *capture) {
	t.Helper()
	got := &capture{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/audio/transcriptions" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		if err := r.ParseMultipartForm(10 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got.auth = r.Header.Get("Authorization")
		got.model = r.FormValue("model")
		got.format = r.FormValue("response_format")
		got.language = r.FormValue("language")
		got.granularities = r.MultipartForm.Value["timestamp_granularities[]"]
		f, fh, err := r.FormFile("file")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer f.Close()
		got.fileName = fh.Filename
		got.fileType = fh.Header.Get("Content-Type")
		got.file, _ = io.ReadAll(f)
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

func TestTranscribeMapsVerboseJSON(t *testing.T) {
	srv, got := newServer(t, http.StatusOK, nil, verboseReply)
	path, data := audioFile(t)
	engine := whisper.New(whisper.Config{BaseURL: srv.URL + "/", APIKey: "sk-test"})
	if engine.Name() != "whisper" {
		t.Errorf("Name = %q", engine.Name())
	}

	res, err := engine.Transcribe(context.Background(), speech.Request{
		Path: path, ContentType: "audio/opus", Language: "en-US", Diarization: true})
	if err != nil {
		t.Fatalf("Transcribe: %v", err)
	}

	if got.auth != "Bearer sk-test" {
		t.Errorf("Authorization = %q", got.auth)
	}
	if got.model != "whisper-1" || got.format != "verbose_json" || got.language != "en" {
		t.Errorf("model, response_format, language = %q, %q, %q", got.model, got.format, got.language)
	}
	if !slices.Equal(got.granularities, []string{"word", "segment"}) {
		t.Errorf("timestamp_granularities[] = %q", got.granularities)
	}
	if !bytes.Equal(got.file, data) || got.fileName != "audio.ogg" || got.fileType != "audio/opus" {
		t.Errorf("file = %q named %q of type %q", got.file, got.fileName, got.fileType)
	}

	if res.Text != "And Mister John Dashwood had then leisure to consider." {
		t.Errorf("Text = %q", res.Text)
	}
	if res.Language != "en" || res.DurationMs != 7100 {
		t.Errorf("Language, DurationMs = %q, %d", res.Language, res.DurationMs)
	}
	if len(res.Segments) != 2 {
		t.Fatalf("got %d segments, want 2", len(res.Segments))
	}
	first, second := res.Segments[0], res.Segments[1]
	if first.Text != "And Mister John Dashwood" || first.Start != 0 || first.End != 3.2 {
		t.Errorf("first segment = %+v", first)
	}
	if len(first.Words) != 4 || len(second.Words) != 5 {
		t.Fatalf("words per segment = %d, %d, want 4, 5", len(first.Words), len(second.Words))
	}
	if w := second.Words[2]; w.Word != "leisure" || w.Start != 4.2 || w.End != 4.8 {
		t.Errorf("word = %+v", w)
	}
	if first.Speaker != "" || second.Speaker != "" {
		t.Error("whisper segments carry a speaker, want none")
	}
	if c := first.Confidence; c < 0.904 || c > 0.905 {
		t.Errorf("first segment confidence = %v, want exp(-0.1)", c)
	}
	if c := res.Confidence; c < 0.755 || c > 0.756 {
		t.Errorf("Confidence = %v, want mean of exp(-0.1) and exp(-0.5)", c)
	}
}

func TestTranscribeOmitsEmptyOptions(t *testing.T) {
	srv, got := newServer(t, http.StatusOK, nil, verboseReply)
	path, _ := audioFile(t)
	engine := whisper.New(whisper.Config{BaseURL: srv.URL, Model: "large-v3"})
	if _, err := engine.Transcribe(context.Background(), speech.Request{Path: path}); err != nil {
		t.Fatal(err)
	}
	if got.auth != "" || got.language != "" || got.model != "large-v3" || got.fileName != "audio.opus" {
		t.Errorf("auth %q, language %q, model %q, file name %q",
			got.auth, got.language, got.model, got.fileName)
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
		{"invalid format", 400, nil,
			`{"error": {"message": "Invalid file format. Supported formats: ['flac', 'mp3']", "type": "invalid_request_error", "param": null, "code": null}}`,
			speech.CodeUnsupportedFormat, false, 0},
		{"too short", 400, nil,
			`{"error": {"message": "Audio file is too short. Minimum audio length is 0.1 seconds.", "type": "invalid_request_error"}}`,
			speech.CodeAudioTooShort, false, 0},
		{"bad key", 401, nil,
			`{"error": {"message": "Incorrect API key provided: sk-test.", "type": "invalid_request_error", "code": "invalid_api_key"}}`,
			speech.CodeProcessingError, false, 0},
		{"rate limited", 429, http.Header{"Retry-After": {"7"}},
			`{"error": {"message": "Rate limit reached", "type": "requests"}}`,
			speech.CodeProcessingError, true, 7 * time.Second},
		{"server error", 500, nil, `{"error": {"message": "The server had an error"}}`,
			speech.CodeProcessingError, true, 0},
		{"bad gateway", 502, nil, `<html>bad gateway</html>`, speech.CodeProcessingError, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newServer(t, tc.status, tc.header, tc.body)
			path, _ := audioFile(t)
			engine := whisper.New(whisper.Config{BaseURL: srv.URL, APIKey: "sk-test"})
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

func TestTranscribeUnreachableServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	path, _ := audioFile(t)
	_, err := whisper.New(whisper.Config{BaseURL: url}).Transcribe(context.Background(),
		speech.Request{Path: path})
	if se := speech.AsError(err); !se.Retryable || se.Code != speech.CodeProcessingError {
		t.Errorf("error = %+v, want retryable processing_error", se)
	}
}
