// Package whisper transcribes through the OpenAI-compatible transcription
// API (POST /v1/audio/transcriptions), served by OpenAI, whisper.cpp's
// server and other compatible servers.
package whisper

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/botaserver/bota/internal/speech"
)

// Name is the engine and provider name.
const Name = "whisper"

// Config configures an Engine.
type Config struct {
	// BaseURL is the server root, without /v1. Default "https://api.openai.com".
	BaseURL string
	// APIKey is sent as a bearer token; empty sends no Authorization header
	// (local servers).
	APIKey string
	// Model is the model name. Default "whisper-1".
	Model string
	// HTTPClient makes the requests. Default a client with a 10 minute timeout.
	HTTPClient *http.Client
	// Logger receives a record per request. Default slog.Default().
	Logger *slog.Logger
}

// Engine calls an OpenAI-compatible transcription server.
type Engine struct {
	cfg Config
}

var _ speech.Engine = (*Engine)(nil)

// New returns an engine with cfg's defaults applied.
func New(cfg Config) *Engine {
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.openai.com"
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.Model == "" {
		cfg.Model = "whisper-1"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Minute}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("engine", Name)
	return &Engine{cfg: cfg}
}

// Name returns "whisper".
func (e *Engine) Name() string { return Name }

// verboseJSON is the response_format=verbose_json reply.
type verboseJSON struct {
	Language string  `json:"language"`
	Duration float64 `json:"duration"`
	Text     string  `json:"text"`
	Segments []struct {
		Start      float64 `json:"start"`
		End        float64 `json:"end"`
		Text       string  `json:"text"`
		AvgLogprob float64 `json:"avg_logprob"`
	} `json:"segments"`
	Words []struct {
		Word  string  `json:"word"`
		Start float64 `json:"start"`
		End   float64 `json:"end"`
	} `json:"words"`
}

// Transcribe uploads req.Path as multipart form data and maps the verbose
// JSON reply. The API gives no speakers, so req.Diarization is ignored.
func (e *Engine) Transcribe(ctx context.Context, req speech.Request) (*speech.Result, error) {
	body, contentType, err := e.form(req)
	if err != nil {
		return nil, err
	}
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost,
		e.cfg.BaseURL+"/v1/audio/transcriptions", body)
	if err != nil {
		return nil, &speech.Error{Code: speech.CodeProcessingError,
			Message: "invalid whisper base URL " + e.cfg.BaseURL, Err: err}
	}
	httpReq.Header.Set("Content-Type", contentType)
	if e.cfg.APIKey != "" {
		httpReq.Header.Set("Authorization", "Bearer "+e.cfg.APIKey)
	}

	started := time.Now()
	resp, err := e.cfg.HTTPClient.Do(httpReq)
	if err != nil {
		return nil, speech.TransportError(Name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, speech.TransportError(Name, err)
	}
	e.cfg.Logger.Debug("speech.whisper.response", "status", resp.StatusCode,
		"elapsed_ms", time.Since(started).Milliseconds())
	if resp.StatusCode != http.StatusOK {
		return nil, replyError(resp, data)
	}

	var reply verboseJSON
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, &speech.Error{Code: speech.CodeProcessingError, Retryable: true,
			Message: "whisper reply is not verbose JSON", Err: err}
	}
	return mapReply(&reply, req.Language), nil
}

// form builds the multipart body in memory.
// NOTE: OpenAI accepts files up to 25 MB; longer recordings must be split by
// the caller or sent to a server without that limit.
func (e *Engine) form(req speech.Request) (io.Reader, string, error) {
	audio, err := os.ReadFile(req.Path)
	if err != nil {
		return nil, "", &speech.Error{Code: speech.CodeProcessingError, Retryable: true,
			Message: "reading the audio file failed", Err: err}
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fields := [][2]string{
		{"model", e.cfg.Model},
		{"response_format", "verbose_json"},
		{"timestamp_granularities[]", "word"},
		{"timestamp_granularities[]", "segment"},
	}
	if lang := speech.BaseLanguage(req.Language); lang != "" {
		fields = append(fields, [2]string{"language", lang})
	}
	for _, f := range fields {
		if err := w.WriteField(f[0], f[1]); err != nil {
			return nil, "", fmt.Errorf("write form field %s: %w", f[0], err)
		}
	}
	header := make(textproto.MIMEHeader)
	header.Set("Content-Disposition",
		fmt.Sprintf(`form-data; name="file"; filename=%q`, uploadName(req)))
	if req.ContentType != "" {
		header.Set("Content-Type", req.ContentType)
	} else {
		header.Set("Content-Type", "application/octet-stream")
	}
	part, err := w.CreatePart(header)
	if err != nil {
		return nil, "", fmt.Errorf("create file part: %w", err)
	}
	if _, err := part.Write(audio); err != nil {
		return nil, "", fmt.Errorf("write file part: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, "", fmt.Errorf("close form: %w", err)
	}
	return &buf, w.FormDataContentType(), nil
}

// uploadName returns a file name whose extension tells the server the
// format, because OpenAI detects the format from the name.
func uploadName(req speech.Request) string {
	ext := filepath.Ext(req.Path)
	if e, ok := extensions[strings.ToLower(strings.TrimSpace(strings.Split(req.ContentType, ";")[0]))]; ok {
		ext = e
	}
	return "audio" + ext
}

var extensions = map[string]string{
	"audio/opus": ".ogg", "audio/ogg": ".ogg", "audio/wav": ".wav", "audio/x-wav": ".wav",
	"audio/mpeg": ".mp3", "audio/mp4": ".m4a", "audio/aac": ".m4a",
	"audio/webm": ".webm", "audio/flac": ".flac",
}

// mapReply turns the verbose JSON into a Result. Whisper has no word
// confidence, so each word gets its segment's, exp(avg_logprob).
func mapReply(reply *verboseJSON, requested string) *speech.Result {
	res := &speech.Result{
		Text:       strings.TrimSpace(reply.Text),
		Language:   languageCode(reply.Language, requested),
		DurationMs: int64(math.Round(reply.Duration * 1000)),
		Segments:   []speech.Segment{},
	}
	var confSum float64
	for _, s := range reply.Segments {
		seg := speech.Segment{
			Start:      s.Start,
			End:        s.End,
			Text:       strings.TrimSpace(s.Text),
			Confidence: math.Min(math.Exp(s.AvgLogprob), 1),
		}
		if seg.End <= seg.Start {
			seg.End = seg.Start + 0.01
		}
		confSum += seg.Confidence
		res.Segments = append(res.Segments, seg)
	}
	if len(res.Segments) > 0 {
		res.Confidence = confSum / float64(len(res.Segments))
	}
	// Attach each word to the segment containing its midpoint.
	for _, w := range reply.Words {
		mid := (w.Start + w.End) / 2
		for i := range res.Segments {
			seg := &res.Segments[i]
			last := i == len(res.Segments)-1
			if mid < seg.End || last || mid < res.Segments[i+1].Start {
				seg.Words = append(seg.Words, speech.Word{
					Word: strings.TrimSpace(w.Word), Start: w.Start, End: w.End,
					Confidence: seg.Confidence,
				})
				break
			}
		}
	}
	return res
}

// replyError maps an OpenAI error reply, {"error": {"message", "type",
// "code"}}, refining 400 replies about the audio itself.
func replyError(resp *http.Response, data []byte) error {
	var body struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	detail := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &body) == nil && body.Error.Message != "" {
		detail = body.Error.Message
	}
	if len(detail) > 500 {
		detail = detail[:500]
	}
	e := speech.HTTPError(Name, resp, detail)
	if resp.StatusCode == http.StatusBadRequest {
		lower := strings.ToLower(detail)
		switch {
		case strings.Contains(lower, "too short"):
			e.Code = speech.CodeAudioTooShort
		case strings.Contains(lower, "invalid file format"),
			strings.Contains(lower, "unsupported"):
			e.Code = speech.CodeUnsupportedFormat
		case strings.Contains(lower, "could not be decoded"),
			strings.Contains(lower, "corrupt"):
			e.Code = speech.CodeAudioCorrupt
		}
	}
	return e
}
