package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/apitest"
	"github.com/botaserver/bota/internal/processing"
	speechengine "github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/speech/local"
	"github.com/botaserver/bota/internal/speech/speechtest"
	"github.com/botaserver/bota/internal/speech/whisper"
)

// transcriptionKeys are the keys clients read from a transcription; each
// must be present, even when null.
var transcriptionKeys = []string{
	"id", "object", "project_id", "recording_id", "status", "language", "provider", "engine",
	"text", "full_text", "segments", "confidence", "word_count", "duration_ms", "error",
	"created_at", "updated_at", "started_at", "completed_at", "deleted_at",
}

var (
	transcriptionPattern = apitest.IDPattern("txn")
	languageTag          = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
)

// waitLimit bounds every wait for a transcription. pocketsphinx takes 1.5
// to 2.5 s of one core per LibriVox clip; tests run in parallel on both
// databases.
const waitLimit = 3 * time.Minute

// checkTranscription checks the keys, id syntax, timestamps and null rules
// of a transcription object, and for a completed one its transcript and
// segments as the export clients read them.
func checkTranscription(t *testing.T, env *apitest.Env, tr map[string]any) {
	t.Helper()
	requireKeys(t, "transcription", tr, transcriptionKeys)
	if id := str(tr, "id"); !transcriptionPattern.MatchString(id) {
		t.Errorf("transcription id = %q, want %s", id, transcriptionPattern)
	}
	if tr["object"] != "transcription" {
		t.Errorf("transcription object = %v", tr["object"])
	}
	if tr["project_id"] != env.Project.ID {
		t.Errorf("transcription project_id = %v, want %s", tr["project_id"], env.Project.ID)
	}
	if tr["deleted_at"] != nil {
		t.Errorf("transcription deleted_at = %v, want null", tr["deleted_at"])
	}
	checkTime(t, "transcription created_at", tr["created_at"], false)
	checkTime(t, "transcription updated_at", tr["updated_at"], false)
	checkTime(t, "transcription started_at", tr["started_at"], true)
	checkTime(t, "transcription completed_at", tr["completed_at"], true)
	if p := tr["provider"]; p != nil && !slices.Contains(speechengine.Providers, p.(string)) {
		t.Errorf("transcription provider = %v, want null or one of %v", p, speechengine.Providers)
	}
	if lang, ok := tr["language"].(string); ok && !languageTag.MatchString(lang) {
		t.Errorf("transcription language = %q, want a BCP-47 tag", lang)
	}

	switch str(tr, "status") {
	case "completed":
		checkCompleted(t, tr)
	case "failed":
		checkTime(t, "failed transcription completed_at", tr["completed_at"], false)
		e, ok := tr["error"].(map[string]any)
		if !ok {
			t.Errorf("failed transcription error = %v, want an object", tr["error"])
			return
		}
		if str(e, "code") == "" || str(e, "message") == "" {
			t.Errorf("failed transcription error = %v, want code and message", e)
		}
	case "pending", "processing":
		if tr["error"] != nil || tr["completed_at"] != nil {
			t.Errorf("running transcription error = %v, completed_at = %v, want null",
				tr["error"], tr["completed_at"])
		}
	default:
		t.Errorf("transcription status = %v", tr["status"])
	}
}

// checkCompleted checks what the export clients check on a completed
// transcription: text, counts, times, and segments sorted with end > start
// and no speaker key when the engine gives no speakers.
func checkCompleted(t *testing.T, tr map[string]any) {
	t.Helper()
	if tr["error"] != nil {
		t.Errorf("completed transcription error = %v, want null", tr["error"])
	}
	checkTime(t, "completed transcription started_at", tr["started_at"], false)
	checkTime(t, "completed transcription completed_at", tr["completed_at"], false)
	text, ok := tr["full_text"].(string)
	if !ok {
		t.Errorf("full_text = %#v, want a string", tr["full_text"])
	}
	if tr["text"] != text {
		t.Errorf("text = %#v, full_text = %#v, want equal", tr["text"], text)
	}
	if wc, ok := tr["word_count"].(float64); !ok || int(wc) != len(strings.Fields(text)) {
		t.Errorf("word_count = %v, want %d (words of full_text)", tr["word_count"],
			len(strings.Fields(text)))
	}
	if c, ok := tr["confidence"].(float64); !ok || c < 0 || c > 1 {
		t.Errorf("confidence = %v, want a number in [0, 1]", tr["confidence"])
	}
	if d, ok := tr["duration_ms"].(float64); !ok || d <= 0 {
		t.Errorf("duration_ms = %v, want a positive number", tr["duration_ms"])
	}
	if _, ok := tr["language"].(string); !ok {
		t.Errorf("completed transcription language = %v, want a string", tr["language"])
	}

	segs, ok := tr["segments"].([]any)
	if !ok {
		t.Errorf("segments = %#v, want a list", tr["segments"])
		return
	}
	prevStart := -1.0
	var joined []string
	for i, v := range segs {
		s, _ := v.(map[string]any)
		start, ok1 := s["start"].(float64)
		end, ok2 := s["end"].(float64)
		if !ok1 || !ok2 {
			t.Errorf("segment %d start, end = %v, %v, want numbers", i, s["start"], s["end"])
			continue
		}
		if start < 0 || end <= start {
			t.Errorf("segment %d: start %v, end %v, want 0 <= start < end", i, start, end)
		}
		if start < prevStart {
			t.Errorf("segment %d starts at %v, before the previous one at %v", i, start, prevStart)
		}
		prevStart = start
		if _, has := s["speaker"]; has {
			t.Errorf("segment %d has key speaker (%v), want it omitted", i, s["speaker"])
		}
		segText, _ := s["text"].(string)
		if strings.TrimSpace(segText) == "" {
			t.Errorf("segment %d text = %#v, want non-blank", i, s["text"])
		}
		joined = append(joined, segText)
	}
	if got := strings.Join(joined, " "); got != text {
		t.Errorf("segment texts joined = %q, full_text = %q", got, text)
	}
}

// checkWords checks the top-level words of a completed transcription:
// each has a word, times inside the audio and a confidence.
func checkWords(t *testing.T, tr map[string]any) {
	t.Helper()
	words, ok := tr["words"].([]any)
	if !ok || len(words) == 0 {
		t.Errorf("words = %#v, want a non-empty list", tr["words"])
		return
	}
	duration, _ := tr["duration_ms"].(float64)
	for i, v := range words {
		w, _ := v.(map[string]any)
		start, _ := w["start"].(float64)
		end, _ := w["end"].(float64)
		if str(w, "word") == "" {
			t.Errorf("word %d = %v, want a word", i, w)
		}
		if start < 0 || end < start || end*1000 > duration+50 {
			t.Errorf("word %d %q: start %v, end %v, audio %v ms", i, str(w, "word"), start, end,
				duration)
		}
		if c, ok := w["confidence"].(float64); !ok || c < 0 || c > 1 {
			t.Errorf("word %d confidence = %v", i, w["confidence"])
		}
	}
}

// clips returns the LibriVox reference clips, each encoded to Opus once
// for the whole test binary.
var clips = sync.OnceValues(func() ([]speechtest.Clip, error) { return speechtest.LibriVox() })

var opusCache sync.Map // WAV path -> []byte

func opus(t *testing.T, c speechtest.Clip) []byte {
	t.Helper()
	if v, ok := opusCache.Load(c.WAVPath); ok {
		return v.([]byte)
	}
	data := apitest.EncodeOpus(t, c.WAVPath)
	opusCache.Store(c.WAVPath, data)
	return data
}

func libriVox(t *testing.T) []speechtest.Clip {
	t.Helper()
	cs, err := clips()
	if err != nil {
		t.Fatalf("LibriVox clips: %v", err)
	}
	return cs
}

// byHand runs pocketsphinx_continuous on each clip's WAV as a person would
// and returns the hypothesis line per clip id.
var byHand = sync.OnceValues(func() (map[string]string, error) {
	cs, err := clips()
	if err != nil {
		return nil, err
	}
	hyps := map[string]string{}
	for _, c := range cs {
		out, err := exec.Command("pocketsphinx_continuous", "-infile", c.WAVPath, "-time", "yes",
			"-logfn", "/dev/null").Output()
		if err != nil {
			return nil, err
		}
		first, _, _ := bytes.Cut(out, []byte("\n"))
		hyps[c.ID] = strings.TrimSpace(string(first))
	}
	return hyps, nil
})

func TestTranscriptionOfLibriVoxUploads(t *testing.T) {
	cs := libriVox(t)
	refs := map[string]string{}
	for _, c := range cs {
		refs[c.ID] = c.Reference
	}
	hand, err := byHand()
	if err != nil {
		t.Fatalf("pocketsphinx by hand: %v", err)
	}
	handErrors, words := speechtest.WER(refs, hand)
	handWER := 100 * float64(handErrors) / float64(words)
	t.Logf("pocketsphinx by hand on the WAV files: %d errors in %d words, WER %.1f%%",
		handErrors, words, handWER)

	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		env := apitest.NewPipeline(t, b, apitest.PipelineConfig{SpeechWorkers: 2, JobWorkers: 2})
		dev := env.NewBoundDevice()
		started := time.Now()
		recIDs := map[string]string{}
		for _, c := range cs {
			recIDs[c.ID] = env.Upload(dev.Token, "audio/opus", opus(t, c))
		}

		hyps := map[string]string{}
		for _, c := range cs {
			rec := env.WaitRecording(recIDs[c.ID], waitLimit, "completed", "failed")
			if rec["status"] != "completed" {
				t.Errorf("clip %s: recording status %v, want completed", c.ID, rec["status"])
			}
			txnID := str(rec, "transcription_id")
			if !transcriptionPattern.MatchString(txnID) {
				t.Fatalf("clip %s: recording transcription_id = %v", c.ID, rec["transcription_id"])
			}
			r := env.Do("GET", "/v1/transcriptions/"+txnID, env.TestKey, nil)
			env.ExpectStatus(r, http.StatusOK)
			tr := r.Body
			checkTranscription(t, env.Env, tr)
			checkWords(t, tr)
			if tr["status"] != "completed" || tr["recording_id"] != recIDs[c.ID] {
				t.Errorf("clip %s: status %v, recording_id %v", c.ID, tr["status"], tr["recording_id"])
			}
			if tr["provider"] != nil || tr["engine"] != "local" || tr["language"] != "en" {
				t.Errorf("clip %s: provider %v, engine %v, language %v; want null, local, en",
					c.ID, tr["provider"], tr["engine"], tr["language"])
			}
			if tr["error"] != nil {
				t.Errorf("clip %s: error = %v", c.ID, tr["error"])
			}
			hyps[c.ID] = str(tr, "full_text")
		}
		elapsed := time.Since(started)

		errs, n := speechtest.WER(refs, hyps)
		got := 100 * float64(errs) / float64(n)
		t.Logf("%s: pipeline on Opus uploads: %d errors in %d words, WER %.1f%%, %d clips in %s",
			b.Name, errs, n, got, len(cs), elapsed.Round(time.Millisecond))
		if got > handWER+2 {
			t.Errorf("pipeline WER %.1f%% exceeds pocketsphinx by hand (%.1f%%) by more than 2 points",
				got, handWER)
		}
		if env.Local.Peak() > 2 {
			t.Errorf("local engine ran %d recognisers at once, want at most 2", env.Local.Peak())
		}
	})
}

// gateEngine wraps an engine and holds each call until release is closed,
// so a test can act while a transcription is running.
type gateEngine struct {
	speechengine.Engine
	entered chan struct{}
	release chan struct{}
}

func newGate(e speechengine.Engine) *gateEngine {
	return &gateEngine{Engine: e, entered: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gateEngine) Transcribe(ctx context.Context, req speechengine.Request) (*speechengine.Result, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Engine.Transcribe(ctx, req)
}

func TestTranscriptionRequests(t *testing.T) {
	clip := libriVox(t)[1]
	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		gate := newGate(local.New(local.Config{Workers: 2}))
		env := apitest.NewPipeline(t, b, apitest.PipelineConfig{Engines: speechengine.NewRegistry(gate)})
		dev := env.NewBoundDevice()
		recID := env.Upload(dev.Token, "audio/opus", opus(t, clip))

		// The automatic transcription is held in the engine: asking again
		// returns it.
		select {
		case <-gate.entered:
		case <-time.After(waitLimit):
			t.Fatal("the automatic transcription never reached the engine")
		}
		rec := env.WaitRecording(recID, waitLimit, "processing")
		first := str(rec, "transcription_id")
		for _, path := range []string{"/v1/transcriptions", "/v1/recordings/" + recID + "/transcribe"} {
			r := env.Do("POST", path, env.TestKey, map[string]any{"recording_id": recID})
			env.ExpectStatus(r, http.StatusOK)
			if r.String("id") != first || r.String("status") != "processing" {
				t.Errorf("POST %s while running: id %s status %s, want %s processing",
					path, r.String("id"), r.String("status"), first)
			}
			checkTranscription(t, env.Env, r.Body)
		}
		close(gate.release)
		rec = env.WaitRecording(recID, waitLimit, "completed", "failed")
		if rec["status"] != "completed" || str(rec, "transcription_id") != first {
			t.Fatalf("recording after the first run: status %v, transcription_id %v",
				rec["status"], rec["transcription_id"])
		}

		// A completed recording gets a new transcription that replaces the
		// first.
		r := env.Do("POST", "/v1/transcriptions", env.TestKey, map[string]any{"recording_id": recID})
		env.ExpectStatus(r, http.StatusCreated)
		second := r.String("id")
		if second == first || !transcriptionPattern.MatchString(second) {
			t.Fatalf("second transcription id = %q, first %q", second, first)
		}
		if r.String("status") != "pending" || r.Body["provider"] != nil {
			t.Errorf("new transcription status %v provider %v, want pending and null",
				r.Body["status"], r.Body["provider"])
		}
		checkTranscription(t, env.Env, r.Body)
		again := env.Do("GET", "/v1/recordings/"+recID, env.TestKey, nil)
		if str(again.Body, "transcription_id") != second {
			t.Errorf("recording transcription_id = %v, want %s", again.Body["transcription_id"], second)
		}
		secondAt := time.Now()
		done := env.WaitTranscription(second, waitLimit)
		// A transcription of a 3-second clip takes about 2 s of one core.
		if took := time.Since(secondAt); took > 30*time.Second {
			t.Errorf("second transcription took %s, want it queued at once", took.Round(time.Second))
		}
		if done["status"] != "completed" {
			t.Errorf("second transcription status = %v, error %v", done["status"], done["error"])
		}
		checkTranscription(t, env.Env, done)
		rec = env.WaitRecording(recID, waitLimit, "completed")
		if str(rec, "transcription_id") != second {
			t.Errorf("recording transcription_id = %v, want %s", rec["transcription_id"], second)
		}

		// Both stay listed, newest first, and each ran once.
		list := env.Do("GET", "/v1/transcriptions?recording_id="+recID, env.TestKey, nil)
		env.ExpectStatus(list, http.StatusOK)
		data := list.Data()
		if len(data) != 2 || str(data[0], "id") != second || str(data[1], "id") != first {
			t.Errorf("list for the recording = %s, want %s then %s", list.Raw, second, first)
		}
		for _, tr := range data {
			checkTranscription(t, env.Env, tr)
		}
	})
}

func TestTranscriptionRequestErrors(t *testing.T) {
	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		env := apitest.NewPipeline(t, b, apitest.PipelineConfig{})
		dev := env.NewBoundDevice()
		r := env.Do("POST", "/v1/recordings", dev.Token, map[string]any{})
		env.ExpectStatus(r, http.StatusCreated)
		pending := r.String("id")

		r = env.Do("POST", "/v1/transcriptions", env.TestKey, map[string]any{"recording_id": pending})
		env.ExpectError(r, http.StatusConflict, "conflict", "recording_id")
		r = env.Do("POST", "/v1/recordings/"+pending+"/transcribe", env.TestKey, nil)
		env.ExpectError(r, http.StatusConflict, "conflict", "id")

		unknown := "rec_" + strings.Repeat("A", 24)
		r = env.Do("POST", "/v1/transcriptions", env.TestKey, map[string]any{"recording_id": unknown})
		env.ExpectError(r, http.StatusNotFound, "not_found", "recording_id")
		r = env.Do("POST", "/v1/transcriptions", env.TestKey, map[string]any{"recording_id": "bogus"})
		env.ExpectError(r, http.StatusNotFound, "not_found", "recording_id")
		r = env.Do("GET", "/v1/transcriptions/txn_"+strings.Repeat("B", 24), env.TestKey, nil)
		env.ExpectError(r, http.StatusNotFound, "not_found", "id")

		r = env.Do("POST", "/v1/transcriptions", env.TestKey, map[string]any{})
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", "recording_id")
		r = env.Do("POST", "/v1/transcriptions", env.TestKey,
			map[string]any{"recording_id": pending, "provider": "nope"})
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", "provider")
		r = env.Do("POST", "/v1/transcriptions", env.TestKey,
			map[string]any{"recording_id": pending, "language": "english!"})
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", "language")

		// Another project's recording is not found.
		other := env.OtherProject()
		r = env.Do("POST", "/v1/transcriptions", other.TestKey, map[string]any{"recording_id": pending})
		env.ExpectError(r, http.StatusNotFound, "not_found", "recording_id")
		// So is the other mode's.
		r = env.Do("POST", "/v1/transcriptions", env.LiveKey, map[string]any{"recording_id": pending})
		env.ExpectError(r, http.StatusNotFound, "not_found", "recording_id")

		// Scopes and credentials.
		readOnly := env.NewKey("test", "transcriptions:read")
		r = env.Do("POST", "/v1/transcriptions", readOnly.Secret, map[string]any{"recording_id": pending})
		env.ExpectError(r, http.StatusForbidden, "insufficient_scope", "")
		if !strings.Contains(str(r.Error(), "message"), "transcriptions:write") {
			t.Errorf("insufficient_scope message = %q, want the scope named", str(r.Error(), "message"))
		}
		writer := env.NewKey("test", "transcriptions:write")
		r = env.Do("POST", "/v1/transcriptions", writer.Secret, map[string]any{"recording_id": pending})
		env.ExpectError(r, http.StatusConflict, "conflict", "recording_id")
		r = env.Do("POST", "/v1/transcriptions", dev.Token, map[string]any{"recording_id": pending})
		env.ExpectError(r, http.StatusForbidden, "forbidden", "")
		r = env.Do("POST", "/v1/recordings/"+pending+"/transcribe", dev.Token, nil)
		env.ExpectError(r, http.StatusForbidden, "forbidden", "")
		r = env.Do("GET", "/v1/transcriptions", dev.Token, nil)
		env.ExpectError(r, http.StatusForbidden, "forbidden", "")
		r = env.Do("POST", "/v1/transcriptions", "", map[string]any{"recording_id": pending})
		env.ExpectError(r, http.StatusUnauthorized, "unauthorized", "")
	})
}

func TestTranscriptionCreateRateLimit(t *testing.T) {
	env := apitest.NewPipeline(t, apitest.SQLite(), apitest.PipelineConfig{Options: []apitest.Option{
		apitest.WithRateLimit(100, 10),
		apitest.WithConfig(func(c *api.Config) { c.TranscriptionRateLimit = 10 }),
	}})
	unknown := "rec_" + strings.Repeat("C", 24)
	for i := range 10 {
		r := env.Do("POST", "/v1/transcriptions", env.TestKey, map[string]any{"recording_id": unknown})
		if r.Status != http.StatusNotFound {
			t.Fatalf("create %d: status %d, want 404 within the limit; body %s", i+1, r.Status, r.Raw)
		}
	}
	r := env.Do("POST", "/v1/transcriptions", env.TestKey, map[string]any{"recording_id": unknown})
	env.ExpectError(r, http.StatusTooManyRequests, "rate_limit_exceeded", "")
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// The limit counts creates only: reads still pass.
	r = env.Do("GET", "/v1/transcriptions", env.TestKey, nil)
	env.ExpectStatus(r, http.StatusOK)
	// The other mode has its own bucket.
	r = env.Do("POST", "/v1/transcriptions", env.LiveKey, map[string]any{"recording_id": unknown})
	env.ExpectError(r, http.StatusNotFound, "not_found", "recording_id")
}

// verboseReply is an OpenAI verbose_json reply with word and segment
// times, as the whisper adapter's tests use it.
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

// whisperServer speaks the OpenAI transcription API on 127.0.0.1. The
// first rateLimited requests get 429 with Retry-After: 0, the rest get
// verboseReply. It counts requests and records the uploaded bytes.
type whisperServer struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	files    [][]byte
}

func newWhisperServer(t *testing.T, rateLimited int64) *whisperServer {
	t.Helper()
	ws := &whisperServer{}
	ws.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ws.requests.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/audio/transcriptions" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		f, _, err := r.FormFile("file")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		data, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ws.mu.Lock()
		ws.files = append(ws.files, data)
		ws.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if n <= rateLimited {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error": {"message": "Rate limit reached", "type": "requests"}}`)
			return
		}
		io.WriteString(w, verboseReply)
	}))
	t.Cleanup(ws.Close)
	return ws
}

func TestTranscriptionProviders(t *testing.T) {
	clip := libriVox(t)[1]
	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		t.Run("not configured", func(t *testing.T) {
			env := apitest.NewPipeline(t, b, apitest.PipelineConfig{})
			env.Do("PUT", "/v1/projects/"+env.Project.ID+"/config/processing", env.TestKey,
				map[string]any{"auto_transcription": map[string]any{"enabled": false}})
			dev := env.NewBoundDevice()
			for _, provider := range []string{"whisper", "elevenlabs", "deepgram", "assemblyai"} {
				recID := env.Upload(dev.Token, "audio/opus", opus(t, clip))
				r := env.Do("POST", "/v1/transcriptions", env.TestKey,
					map[string]any{"recording_id": recID, "provider": provider})
				env.ExpectStatus(r, http.StatusCreated)
				if r.Body["provider"] != provider {
					t.Errorf("%s: provider = %v", provider, r.Body["provider"])
				}
				tr := env.WaitTranscription(r.String("id"), waitLimit)
				checkTranscription(t, env.Env, tr)
				e, _ := tr["error"].(map[string]any)
				if tr["status"] != "failed" || str(e, "code") != "processing_error" ||
					!strings.Contains(str(e, "message"), provider) {
					t.Errorf("%s: status %v, error %v; want failed, processing_error naming it",
						provider, tr["status"], tr["error"])
				}
				if tr["provider"] != provider || tr["engine"] != nil {
					t.Errorf("%s: provider %v, engine %v; want %s and null (nothing ran)",
						provider, tr["provider"], tr["engine"], provider)
				}
				rec := env.WaitRecording(recID, waitLimit, "failed")
				if str(rec, "transcription_id") != r.String("id") {
					t.Errorf("%s: recording transcription_id = %v", provider, rec["transcription_id"])
				}
			}
		})

		t.Run("whisper", func(t *testing.T) {
			ws := newWhisperServer(t, 0)
			engines := speechengine.NewRegistry(local.New(local.Config{}),
				whisper.New(whisper.Config{BaseURL: ws.URL, APIKey: "sk-test"}))
			env := apitest.NewPipeline(t, b, apitest.PipelineConfig{Engines: engines})
			env.Do("PUT", "/v1/projects/"+env.Project.ID+"/config/processing", env.TestKey,
				map[string]any{"auto_transcription": map[string]any{"provider": "whisper"}})
			dev := env.NewBoundDevice()
			data := opus(t, clip)
			recID := env.Upload(dev.Token, "audio/opus", data)
			rec := env.WaitRecording(recID, waitLimit, "completed", "failed")
			tr := env.WaitTranscription(str(rec, "transcription_id"), waitLimit)
			checkTranscription(t, env.Env, tr)
			checkWords(t, tr)
			if tr["status"] != "completed" || tr["provider"] != "whisper" || tr["engine"] != "whisper" {
				t.Errorf("status %v provider %v engine %v, want completed whisper whisper; error %v",
					tr["status"], tr["provider"], tr["engine"], tr["error"])
			}
			want := "And Mister John Dashwood had then leisure to consider."
			if tr["full_text"] != want || tr["language"] != "en" || tr["duration_ms"] != 7100.0 {
				t.Errorf("full_text %v language %v duration_ms %v", tr["full_text"], tr["language"],
					tr["duration_ms"])
			}
			segs, _ := tr["segments"].([]any)
			if len(segs) != 2 {
				t.Fatalf("segments = %v, want the server's 2", tr["segments"])
			}
			s0, _ := segs[0].(map[string]any)
			if s0["text"] != "And Mister John Dashwood" || s0["start"] != 0.0 || s0["end"] != 3.2 {
				t.Errorf("first segment = %v", s0)
			}
			if ws.requests.Load() != 1 || !bytes.Equal(ws.files[0], data) {
				t.Errorf("whisper server got %d requests, want 1 with the uploaded bytes",
					ws.requests.Load())
			}
		})

		t.Run("whisper rate limited", func(t *testing.T) {
			ws := newWhisperServer(t, 1)
			engines := speechengine.NewRegistry(local.New(local.Config{}),
				whisper.New(whisper.Config{BaseURL: ws.URL, APIKey: "sk-test"}))
			env := apitest.NewPipeline(t, b, apitest.PipelineConfig{Engines: engines})
			env.Do("PUT", "/v1/projects/"+env.Project.ID+"/config/processing", env.TestKey,
				map[string]any{"auto_transcription": map[string]any{"enabled": false}})
			dev := env.NewBoundDevice()
			recID := env.Upload(dev.Token, "audio/opus", opus(t, clip))
			r := env.Do("POST", "/v1/transcriptions", env.TestKey,
				map[string]any{"recording_id": recID, "provider": "whisper"})
			env.ExpectStatus(r, http.StatusCreated)
			tr := env.WaitTranscription(r.String("id"), waitLimit)
			if tr["status"] != "completed" || tr["engine"] != "whisper" {
				t.Errorf("status %v engine %v error %v, want completed by whisper after a retry",
					tr["status"], tr["engine"], tr["error"])
			}
			if n := ws.requests.Load(); n != 2 {
				t.Errorf("whisper server got %d requests, want 2 (429, then success)", n)
			}
			stored, err := env.Store.TranscriptionByID(context.Background(), r.String("id"))
			if err != nil {
				t.Fatal(err)
			}
			if stored.Attempts != 2 {
				t.Errorf("attempts = %d, want 2", stored.Attempts)
			}
			env.WaitRecording(recID, waitLimit, "completed")
		})
	})
}

// pngImage is a 1x1 PNG.
var pngImage, _ = base64.StdEncoding.DecodeString(
	"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")

func TestTranscriptionAudioChecks(t *testing.T) {
	garbage := make([]byte, 64<<10)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(garbage)
	short := apitest.Tone(t, 0.5, "ogg", "libopus")
	aiff := apitest.Tone(t, 3, "aiff", "pcm_s16be")
	clip := libriVox(t)[1]

	cases := []struct {
		name, contentType string
		data              []byte
		code              string
	}{
		{"random bytes as Opus", "audio/opus", garbage, "audio_corrupt"},
		{"half a second of tone", "audio/opus", short, "audio_too_short"},
		{"PNG as MP3", "audio/mpeg", pngImage, "unsupported_format"},
		{"AIFF as WAV", "audio/wav", aiff, "unsupported_format"},
	}
	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		env := apitest.NewPipeline(t, b, apitest.PipelineConfig{})
		dev := env.NewBoundDevice()
		for _, c := range cases {
			recID := env.Upload(dev.Token, c.contentType, c.data)
			rec := env.WaitRecording(recID, waitLimit, "completed", "failed")
			r := env.Do("GET", "/v1/transcriptions/"+str(rec, "transcription_id"), env.TestKey, nil)
			env.ExpectStatus(r, http.StatusOK)
			checkTranscription(t, env.Env, r.Body)
			e, _ := r.Body["error"].(map[string]any)
			if rec["status"] != "failed" || r.Body["status"] != "failed" || str(e, "code") != c.code {
				t.Errorf("%s: recording %v, transcription %v, error %v; want failed with %s",
					c.name, rec["status"], r.Body["status"], r.Body["error"], c.code)
			}
			if r.Body["full_text"] != nil || r.Body["segments"] != nil {
				t.Errorf("%s: failed transcription has full_text %v, segments %v", c.name,
					r.Body["full_text"], r.Body["segments"])
			}
		}

		// The server still transcribes a good upload after them.
		recID := env.Upload(dev.Token, "audio/opus", opus(t, clip))
		rec := env.WaitRecording(recID, waitLimit, "completed", "failed")
		if rec["status"] != "completed" {
			t.Errorf("good upload after bad ones: recording status %v", rec["status"])
		}
	})
}

func TestProcessingConfig(t *testing.T) {
	clip := libriVox(t)[1]
	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		env := apitest.NewPipeline(t, b, apitest.PipelineConfig{})
		path := "/v1/projects/" + env.Project.ID + "/config/processing"

		for _, p := range []string{"/v1/config/processing", path} {
			r := env.Do("GET", p, env.TestKey, nil)
			env.ExpectStatus(r, http.StatusOK)
			checkProcessingSection(t, r.Body, "default", true)
		}

		r := env.Do("PUT", path, env.TestKey,
			map[string]any{"auto_transcription": map[string]any{"enabled": false}})
		env.ExpectStatus(r, http.StatusOK)
		checkProcessingSection(t, r.Body, "project", false)
		r = env.Do("GET", "/v1/config/processing", env.TestKey, nil)
		checkProcessingSection(t, r.Body, "project", false)
		// The live mode keeps its own settings.
		r = env.Do("GET", "/v1/config/processing", env.LiveKey, nil)
		checkProcessingSection(t, r.Body, "default", true)

		dev := env.NewBoundDevice()
		off := env.Upload(dev.Token, "audio/opus", opus(t, clip))

		r = env.Do("PATCH", path, env.TestKey,
			map[string]any{"auto_summary": map[string]any{"template": "sales_call"}})
		env.ExpectStatus(r, http.StatusOK)
		checkProcessingSection(t, r.Body, "project", false)
		value, _ := r.Body["value"].(map[string]any)
		summary, _ := value["auto_summary"].(map[string]any)
		if summary["template"] != "sales_call" || summary["enabled"] != false {
			t.Errorf("auto_summary after PATCH = %v, want template sales_call, enabled false", summary)
		}

		r = env.Do("PATCH", path, env.TestKey,
			map[string]any{"auto_transcription": map[string]any{"enabled": true}})
		env.ExpectStatus(r, http.StatusOK)
		checkProcessingSection(t, r.Body, "project", true)
		on := env.Upload(dev.Token, "audio/opus", opus(t, clip))
		rec := env.WaitRecording(on, waitLimit, "completed", "failed")
		if rec["status"] != "completed" {
			t.Errorf("upload with auto transcription on: status %v", rec["status"])
		}

		// By now the dispatcher has handled the earlier upload too.
		r = env.Do("GET", "/v1/recordings/"+off, env.TestKey, nil)
		if r.Body["status"] != "uploaded" || r.Body["transcription_id"] != nil {
			t.Errorf("upload with auto transcription off: status %v, transcription_id %v; "+
				"want uploaded and null", r.Body["status"], r.Body["transcription_id"])
		}

		for _, c := range []struct {
			body  any
			param string
		}{
			{map[string]any{"auto_transcription": map[string]any{"enabled": "yes"}}, "auto_transcription.enabled"},
			{map[string]any{"auto_transcription": map[string]any{"provider": "nope"}}, "auto_transcription.provider"},
			{map[string]any{"auto_transcription": map[string]any{"provider": 3}}, "auto_transcription.provider"},
			{map[string]any{"auto_transcription": map[string]any{"template": "general_notes"}}, "auto_transcription.template"},
			{map[string]any{"auto_transcription": true}, "auto_transcription"},
			{map[string]any{"auto_translation": map[string]any{"enabled": true}}, "auto_translation"},
			{map[string]any{"auto_summary": map[string]any{"template": ""}}, "auto_summary.template"},
			{map[string]any{"auto_summary": map[string]any{"provider": "whisper"}}, "auto_summary.provider"},
			{map[string]any{"auto_embedding": map[string]any{"provider": "openai"}}, "auto_embedding.provider"},
			{map[string]any{"auto_enhancement": map[string]any{"provider": "gemini"}}, "auto_enhancement.provider"},
		} {
			for _, method := range []string{"PUT", "PATCH"} {
				r := env.Do(method, path, env.TestKey, c.body)
				env.ExpectError(r, http.StatusBadRequest, "invalid_request", c.param)
			}
		}
		r = env.Do("PUT", path, env.TestKey, "[1]")
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", apitest.AnyParam)
		r = env.Do("PUT", path, env.TestKey, "{")
		env.ExpectError(r, http.StatusBadRequest, "invalid_request", apitest.AnyParam)
		// Refused bodies changed nothing.
		r = env.Do("GET", "/v1/config/processing", env.TestKey, nil)
		checkProcessingSection(t, r.Body, "project", true)

		other := env.OtherProject()
		for _, method := range []string{"GET", "PUT", "PATCH"} {
			r := env.Do(method, "/v1/projects/"+other.ID+"/config/processing", env.TestKey,
				map[string]any{"auto_transcription": map[string]any{"enabled": false}})
			env.ExpectError(r, http.StatusNotFound, "not_found", "id")
			// Another project is not found even when the body is invalid.
			r = env.Do(method, "/v1/projects/"+other.ID+"/config/processing", env.TestKey,
				map[string]any{"auto_transcription": true})
			env.ExpectError(r, http.StatusNotFound, "not_found", "id")
		}
		r = env.Do("GET", "/v1/config/processing", other.TestKey, nil)
		checkProcessingSection(t, r.Body, "default", true)

		readOnly := env.NewKey("test", "config:read")
		r = env.Do("PUT", path, readOnly.Secret, map[string]any{})
		env.ExpectError(r, http.StatusForbidden, "insufficient_scope", "")
	})
}

// checkProcessingSection checks a processing config answer as the
// processing-config clients read it.
func checkProcessingSection(t *testing.T, body map[string]any, source string, autoTranscription bool) {
	t.Helper()
	if body["source"] != source {
		t.Errorf("source = %v, want %s", body["source"], source)
	}
	def, _ := body["definition"].(map[string]any)
	if def["merge_strategy"] != "merge_deep" {
		t.Errorf("definition.merge_strategy = %v, want merge_deep", def["merge_strategy"])
	}
	value, _ := body["value"].(map[string]any)
	for _, f := range []string{"auto_transcription", "auto_summary", "auto_embedding", "auto_enhancement"} {
		obj, _ := value[f].(map[string]any)
		if _, ok := obj["enabled"].(bool); !ok {
			t.Errorf("value.%s.enabled = %v, want a bool", f, obj["enabled"])
		}
	}
	at, _ := value["auto_transcription"].(map[string]any)
	if at["enabled"] != autoTranscription {
		t.Errorf("value.auto_transcription.enabled = %v, want %v", at["enabled"], autoTranscription)
	}
	if p := at["provider"]; p != nil && !slices.Contains(speechengine.Providers, p.(string)) {
		t.Errorf("value.auto_transcription.provider = %v", p)
	}
}

func TestTranscriptionConcurrency(t *testing.T) {
	if testing.Short() {
		t.Skip("transcribes 20 uploads per database")
	}
	clip := libriVox(t)[1]
	const uploads, speechWorkers = 20, 2
	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		env := apitest.NewPipeline(t, b, apitest.PipelineConfig{SpeechWorkers: speechWorkers, JobWorkers: 4})
		data := opus(t, clip)
		started := time.Now()
		ids := make([]string, uploads)
		var wg sync.WaitGroup
		for i := range uploads {
			dev := env.NewBoundDevice()
			wg.Go(func() {
				ids[i] = env.For(t).Upload(dev.Token, "audio/opus", data)
			})
		}
		wg.Wait()
		uploaded := time.Since(started)
		for _, id := range ids {
			rec := env.WaitRecording(id, waitLimit, "completed", "failed")
			if rec["status"] != "completed" {
				t.Errorf("recording %s: status %v", id, rec["status"])
			}
		}
		t.Logf("%s: %d uploads in %s, all transcribed after %s; peak recognisers %d",
			b.Name, uploads, uploaded.Round(time.Millisecond), time.Since(started).Round(time.Millisecond),
			env.Local.Peak())
		if env.Local.Peak() > speechWorkers || env.Local.Peak() < 1 {
			t.Errorf("peak recognisers = %d, want 1 to %d", env.Local.Peak(), speechWorkers)
		}
		r := env.Do("GET", "/v1/transcriptions?limit=100", env.TestKey, nil)
		if n := len(r.Data()); n != uploads {
			t.Errorf("%d transcriptions listed, want %d", n, uploads)
		}
	})
}

// A transcription attempt's timeout grows with the recording's duration,
// which the worker reads from the store.
func TestTranscribeTimeoutFollowsDuration(t *testing.T) {
	clip := libriVox(t)[1]
	eachBackend(t, func(t *testing.T, b apitest.Backend) {
		env := apitest.NewPipeline(t, b, apitest.PipelineConfig{})
		dev := env.NewBoundDevice()
		recID := env.Upload(dev.Token, "audio/opus", opus(t, clip))
		rec := env.WaitRecording(recID, waitLimit, "completed", "failed")
		durationMs, ok := rec["duration_ms"].(float64)
		trID, _ := rec["transcription_id"].(string)
		if !ok || durationMs < 1000 || trID == "" {
			t.Fatalf("recording duration_ms %v, transcription_id %v", rec["duration_ms"], rec["transcription_id"])
		}

		w := &processing.TranscribeWorker{Pipeline: env.Pipeline, Limit: time.Minute, MaxLimit: time.Hour}
		job := &river.Job[processing.TranscribeArgs]{Args: processing.TranscribeArgs{
			TranscriptionID: trID, RecordingID: recID}}
		if got, want := w.Timeout(job), time.Minute+time.Duration(durationMs)*time.Millisecond; got != want {
			t.Errorf("Timeout = %s, want %s for %.0f ms of audio", got, want, durationMs)
		}
		job.Args.TranscriptionID = "txn_missing"
		if got := w.Timeout(job); got != time.Hour {
			t.Errorf("Timeout of an unknown transcription = %s, want the 1h maximum", got)
		}
	})
}
