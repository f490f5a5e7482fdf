// Package assemblyai transcribes through AssemblyAI's v2 API: upload the
// file, create a transcript, poll it until it completes or fails.
package assemblyai

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/botaserver/bota/internal/speech"
)

// Name is the engine and provider name.
const Name = "assemblyai"

// Config configures an Engine.
type Config struct {
	// BaseURL is the server root, without /v2. Default "https://api.assemblyai.com".
	BaseURL string
	// APIKey is sent in the authorization header.
	APIKey string
	// Model is the speech model ("best", "nano"); empty leaves the
	// service's default.
	Model string
	// HTTPClient makes the requests. Default a client with a 10 minute timeout.
	HTTPClient *http.Client
	// Logger receives a record per transcript. Default slog.Default().
	Logger *slog.Logger
	// PollInterval is the wait between status requests. Default 3 s.
	PollInterval time.Duration
}

// Engine calls AssemblyAI.
type Engine struct {
	cfg Config
}

var _ speech.Engine = (*Engine)(nil)

// New returns an engine with cfg's defaults applied.
func New(cfg Config) *Engine {
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.assemblyai.com"
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Minute}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("engine", Name)
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 3 * time.Second
	}
	return &Engine{cfg: cfg}
}

// Name returns "assemblyai".
func (e *Engine) Name() string { return Name }

type word struct {
	Text       string  `json:"text"`
	Start      int64   `json:"start"`
	End        int64   `json:"end"`
	Confidence float64 `json:"confidence"`
	Speaker    *string `json:"speaker"`
}

type transcript struct {
	ID            string   `json:"id"`
	Status        string   `json:"status"`
	Error         string   `json:"error"`
	Text          string   `json:"text"`
	LanguageCode  string   `json:"language_code"`
	Confidence    float64  `json:"confidence"`
	AudioDuration *float64 `json:"audio_duration"`
	Words         []word   `json:"words"`
	Utterances    []struct {
		Start      int64   `json:"start"`
		End        int64   `json:"end"`
		Confidence float64 `json:"confidence"`
		Speaker    string  `json:"speaker"`
		Text       string  `json:"text"`
		Words      []word  `json:"words"`
	} `json:"utterances"`
}

// Transcribe uploads req.Path, requests a transcript with speaker labels
// and polls it. Speakers are reported only when req.Diarization is set.
func (e *Engine) Transcribe(ctx context.Context, req speech.Request) (*speech.Result, error) {
	uploadURL, err := e.upload(ctx, req.Path)
	if err != nil {
		return nil, err
	}

	create := map[string]any{"audio_url": uploadURL, "speaker_labels": true}
	if code := languageCode(req.Language); code != "" {
		create["language_code"] = code
	} else {
		create["language_detection"] = true
	}
	if e.cfg.Model != "" {
		create["speech_model"] = e.cfg.Model
	}
	var t transcript
	if err := e.call(ctx, http.MethodPost, "/v2/transcript", create, &t); err != nil {
		return nil, err
	}
	e.cfg.Logger.Debug("speech.assemblyai.created", "transcript_id", t.ID)

	for t.Status != "completed" {
		switch t.Status {
		case "error":
			return nil, transcriptError(t.ID, t.Error)
		case "queued", "processing":
		default:
			return nil, &speech.Error{Code: speech.CodeProcessingError, Retryable: true,
				Message: fmt.Sprintf("assemblyai transcript %s has unknown status %q", t.ID, t.Status)}
		}
		select {
		case <-ctx.Done():
			return nil, speech.TransportError(Name, ctx.Err())
		case <-time.After(e.cfg.PollInterval):
		}
		if err := e.call(ctx, http.MethodGet, "/v2/transcript/"+url.PathEscape(t.ID), nil, &t); err != nil {
			return nil, err
		}
	}
	e.cfg.Logger.Debug("speech.assemblyai.completed", "transcript_id", t.ID)
	return mapTranscript(&t, req), nil
}

// upload sends the file to /v2/upload and returns the URL to transcribe.
func (e *Engine) upload(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", &speech.Error{Code: speech.CodeProcessingError, Retryable: true,
			Message: "opening the audio file failed", Err: err}
	}
	defer f.Close()
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.BaseURL+"/v2/upload", f)
	if err != nil {
		return "", &speech.Error{Code: speech.CodeProcessingError,
			Message: "invalid assemblyai base URL " + e.cfg.BaseURL, Err: err}
	}
	if st, err := f.Stat(); err == nil {
		httpReq.ContentLength = st.Size()
	}
	httpReq.Header.Set("Content-Type", "application/octet-stream")
	var reply struct {
		UploadURL string `json:"upload_url"`
	}
	if err := e.do(httpReq, &reply); err != nil {
		return "", err
	}
	if reply.UploadURL == "" {
		return "", &speech.Error{Code: speech.CodeProcessingError, Retryable: true,
			Message: "assemblyai upload reply has no upload_url"}
	}
	return reply.UploadURL, nil
}

// call sends a JSON request (body may be nil) and decodes the reply into out.
func (e *Engine) call(ctx context.Context, method, path string, body, out any) error {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode assemblyai request: %w", err)
		}
		reader = bytes.NewReader(data)
	}
	httpReq, err := http.NewRequestWithContext(ctx, method, e.cfg.BaseURL+path, reader)
	if err != nil {
		return &speech.Error{Code: speech.CodeProcessingError,
			Message: "invalid assemblyai base URL " + e.cfg.BaseURL, Err: err}
	}
	if body != nil {
		httpReq.Header.Set("Content-Type", "application/json")
	}
	return e.do(httpReq, out)
}

func (e *Engine) do(httpReq *http.Request, out any) error {
	httpReq.Header.Set("Authorization", e.cfg.APIKey)
	resp, err := e.cfg.HTTPClient.Do(httpReq)
	if err != nil {
		return speech.TransportError(Name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return speech.TransportError(Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		// Error replies read {"error": "message"}.
		var body struct {
			Error string `json:"error"`
		}
		detail := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &body) == nil && body.Error != "" {
			detail = body.Error
		}
		if len(detail) > 500 {
			detail = detail[:500]
		}
		return speech.HTTPError(Name, resp, detail)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &speech.Error{Code: speech.CodeProcessingError, Retryable: true,
			Message: "assemblyai reply is not the expected JSON", Err: err}
	}
	return nil
}

// transcriptError maps a transcript that ended with status "error".
func transcriptError(id, msg string) error {
	e := &speech.Error{Code: speech.CodeProcessingError,
		Message: fmt.Sprintf("assemblyai transcript %s failed: %s", id, msg)}
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "does not appear to contain audio"),
		strings.Contains(lower, "no spoken audio"):
		e.Code = speech.CodeAudioCorrupt
	case strings.Contains(lower, "too short"):
		e.Code = speech.CodeAudioTooShort
	case strings.Contains(lower, "file type"), strings.Contains(lower, "unsupported"):
		e.Code = speech.CodeUnsupportedFormat
	case strings.Contains(lower, "internal"), strings.Contains(lower, "try again"):
		e.Retryable = true
	}
	return e
}

func mapTranscript(t *transcript, req speech.Request) *speech.Result {
	res := &speech.Result{
		Text:       t.Text,
		Language:   languageTag(t.LanguageCode),
		Confidence: t.Confidence,
		Segments:   []speech.Segment{},
	}
	if res.Language == "" {
		res.Language = req.Language
	}
	if t.AudioDuration != nil {
		res.DurationMs = int64(*t.AudioDuration * 1000)
	}
	for _, u := range t.Utterances {
		seg := speech.Segment{
			Start:      seconds(u.Start),
			End:        seconds(u.End),
			Text:       u.Text,
			Confidence: u.Confidence,
			Words:      mapWords(u.Words),
		}
		if req.Diarization {
			seg.Speaker = speakerName(u.Speaker)
		}
		if seg.End <= seg.Start {
			seg.End = seg.Start + 0.01
		}
		res.Segments = append(res.Segments, seg)
	}
	slices.SortStableFunc(res.Segments, func(a, b speech.Segment) int {
		return cmp.Compare(a.Start, b.Start)
	})
	if len(res.Segments) == 0 && len(t.Words) > 0 {
		words := mapWords(t.Words)
		res.Segments = append(res.Segments, speech.Segment{
			Start: words[0].Start, End: max(words[len(words)-1].End, words[0].Start+0.01),
			Text: t.Text, Confidence: t.Confidence, Words: words,
		})
	}
	return res
}

func mapWords(in []word) []speech.Word {
	out := make([]speech.Word, 0, len(in))
	for _, w := range in {
		out = append(out, speech.Word{Word: w.Text, Start: seconds(w.Start),
			End: seconds(w.End), Confidence: w.Confidence})
	}
	return out
}

// seconds converts AssemblyAI's milliseconds.
func seconds(ms int64) float64 { return float64(ms) / 1000 }

// speakerName maps AssemblyAI's labels A, B, ... to SPEAKER_0, SPEAKER_1, ...;
// a label outside A-Z is kept as SPEAKER_<label>.
func speakerName(label string) string {
	if len(label) == 1 && label[0] >= 'A' && label[0] <= 'Z' {
		return fmt.Sprintf("SPEAKER_%d", label[0]-'A')
	}
	return "SPEAKER_" + label
}

// languageCode converts a tag such as "en-US" to AssemblyAI's form. Only
// English has regional codes there (en_us, en_uk, en_au), so other tags are
// cut to their primary subtag.
func languageCode(tag string) string {
	base := speech.BaseLanguage(tag)
	region := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(tag)[len(base):], "-"))
	region = strings.TrimPrefix(region, "_")
	if base == "en" {
		switch region {
		case "us", "au":
			return "en_" + region
		case "gb", "uk":
			return "en_uk"
		}
	}
	return base
}

// languageTag converts AssemblyAI's "en_us" to "en-US".
func languageTag(code string) string {
	base, region, ok := strings.Cut(code, "_")
	if !ok {
		return code
	}
	return base + "-" + strings.ToUpper(region)
}
