// Package deepgram transcribes through Deepgram's pre-recorded audio API
// (POST /v1/listen with the audio as the request body).
package deepgram

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/botaserver/bota/internal/speech"
)

// Name is the engine and provider name.
const Name = "deepgram"

// Config configures an Engine.
type Config struct {
	// BaseURL is the server root, without /v1. Default "https://api.deepgram.com".
	BaseURL string
	// APIKey is sent as "Authorization: Token KEY".
	APIKey string
	// Model is the model name. Default "nova-2".
	Model string
	// HTTPClient makes the requests. Default a client with a 10 minute timeout.
	HTTPClient *http.Client
	// Logger receives a record per request. Default slog.Default().
	Logger *slog.Logger
}

// Engine calls Deepgram.
type Engine struct {
	cfg Config
}

var _ speech.Engine = (*Engine)(nil)

// New returns an engine with cfg's defaults applied.
func New(cfg Config) *Engine {
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.deepgram.com"
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.Model == "" {
		cfg.Model = "nova-2"
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

// Name returns "deepgram".
func (e *Engine) Name() string { return Name }

type word struct {
	Word           string  `json:"word"`
	PunctuatedWord string  `json:"punctuated_word"`
	Start          float64 `json:"start"`
	End            float64 `json:"end"`
	Confidence     float64 `json:"confidence"`
	Speaker        *int    `json:"speaker"`
}

type listenReply struct {
	Metadata struct {
		Duration float64 `json:"duration"`
	} `json:"metadata"`
	Results struct {
		Channels []struct {
			DetectedLanguage string `json:"detected_language"`
			Alternatives     []struct {
				Transcript string  `json:"transcript"`
				Confidence float64 `json:"confidence"`
				Words      []word  `json:"words"`
			} `json:"alternatives"`
		} `json:"channels"`
		Utterances []struct {
			Start      float64 `json:"start"`
			End        float64 `json:"end"`
			Confidence float64 `json:"confidence"`
			Transcript string  `json:"transcript"`
			Speaker    *int    `json:"speaker"`
			Words      []word  `json:"words"`
		} `json:"utterances"`
	} `json:"results"`
}

// Transcribe sends req.Path as the request body and maps the first
// channel's best alternative and its utterances. Diarization is always
// requested; speakers are reported only when req.Diarization is set.
func (e *Engine) Transcribe(ctx context.Context, req speech.Request) (*speech.Result, error) {
	f, err := os.Open(req.Path)
	if err != nil {
		return nil, &speech.Error{Code: speech.CodeProcessingError, Retryable: true,
			Message: "opening the audio file failed", Err: err}
	}
	defer f.Close()

	query := url.Values{
		"model":        {e.cfg.Model},
		"smart_format": {"true"},
		"punctuate":    {"true"},
		"diarize":      {"true"},
		"utterances":   {"true"},
	}
	if req.Language != "" {
		query.Set("language", req.Language)
	} else {
		query.Set("detect_language", "true")
	}
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost,
		e.cfg.BaseURL+"/v1/listen?"+query.Encode(), f)
	if err != nil {
		return nil, &speech.Error{Code: speech.CodeProcessingError,
			Message: "invalid deepgram base URL " + e.cfg.BaseURL, Err: err}
	}
	if st, err := f.Stat(); err == nil {
		httpReq.ContentLength = st.Size()
	}
	contentType := req.ContentType
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	httpReq.Header.Set("Content-Type", contentType)
	httpReq.Header.Set("Authorization", "Token "+e.cfg.APIKey)

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
	e.cfg.Logger.Debug("speech.deepgram.response", "status", resp.StatusCode,
		"elapsed_ms", time.Since(started).Milliseconds(),
		"request_id", resp.Header.Get("dg-request-id"))
	if resp.StatusCode != http.StatusOK {
		return nil, replyError(resp, data)
	}

	var reply listenReply
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, &speech.Error{Code: speech.CodeProcessingError, Retryable: true,
			Message: "deepgram reply is not the expected JSON", Err: err}
	}
	return mapReply(&reply, req), nil
}

func mapReply(reply *listenReply, req speech.Request) *speech.Result {
	res := &speech.Result{
		DurationMs: int64(math.Round(reply.Metadata.Duration * 1000)),
		Language:   req.Language,
		Segments:   []speech.Segment{},
	}
	if len(reply.Results.Channels) == 0 || len(reply.Results.Channels[0].Alternatives) == 0 {
		return res
	}
	channel := reply.Results.Channels[0]
	if channel.DetectedLanguage != "" {
		res.Language = channel.DetectedLanguage
	}
	best := channel.Alternatives[0]
	res.Text = best.Transcript
	res.Confidence = best.Confidence

	for _, u := range reply.Results.Utterances {
		seg := speech.Segment{
			Start:      u.Start,
			End:        u.End,
			Text:       u.Transcript,
			Confidence: u.Confidence,
			Words:      mapWords(u.Words),
		}
		if req.Diarization && u.Speaker != nil {
			seg.Speaker = fmt.Sprintf("SPEAKER_%d", *u.Speaker)
		}
		if seg.End <= seg.Start {
			seg.End = seg.Start + 0.01
		}
		res.Segments = append(res.Segments, seg)
	}
	slices.SortStableFunc(res.Segments, func(a, b speech.Segment) int {
		return cmp.Compare(a.Start, b.Start)
	})
	// Without utterances (a reply to a request that did not ask for them),
	// the whole alternative is one segment.
	if len(res.Segments) == 0 && len(best.Words) > 0 {
		words := mapWords(best.Words)
		res.Segments = append(res.Segments, speech.Segment{
			Start: words[0].Start, End: max(words[len(words)-1].End, words[0].Start+0.01),
			Text: best.Transcript, Confidence: best.Confidence, Words: words,
		})
	}
	return res
}

func mapWords(in []word) []speech.Word {
	out := make([]speech.Word, 0, len(in))
	for _, w := range in {
		text := w.PunctuatedWord
		if text == "" {
			text = w.Word
		}
		out = append(out, speech.Word{Word: text, Start: w.Start, End: w.End, Confidence: w.Confidence})
	}
	return out
}

// replyError maps a Deepgram error reply, {"err_code", "err_msg",
// "request_id"}.
func replyError(resp *http.Response, data []byte) error {
	var body struct {
		ErrCode string `json:"err_code"`
		ErrMsg  string `json:"err_msg"`
	}
	detail := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &body) == nil && body.ErrMsg != "" {
		detail = body.ErrMsg
	}
	if len(detail) > 500 {
		detail = detail[:500]
	}
	e := speech.HTTPError(Name, resp, detail)
	if resp.StatusCode == http.StatusBadRequest {
		lower := strings.ToLower(detail)
		switch {
		case strings.Contains(lower, "corrupt"):
			e.Code = speech.CodeAudioCorrupt
		case strings.Contains(lower, "unsupported"):
			e.Code = speech.CodeUnsupportedFormat
		}
	}
	return e
}
