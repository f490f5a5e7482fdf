// Package whisper transcribes through the OpenAI-compatible transcription
// API (POST /v1/audio/transcriptions), served by OpenAI, whisper.cpp's
// server and other compatible servers.
package whisper

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
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

	"golang.org/x/sync/errgroup"

	"github.com/botaserver/bota/internal/audio"
	"github.com/botaserver/bota/internal/speech"
)

// Name is the engine and provider name.
const Name = "whisper"

// DefaultMaxFileBytes is OpenAI's upload limit of 25 MB, read as decimal
// megabytes, the smaller reading.
const DefaultMaxFileBytes = 25_000_000

// MinFileBytes is the smallest MaxFileBytes: about three seconds of WAV.
const MinFileBytes = 100_000

// maxPieceSeconds bounds the pieces of a split recording. Ten minutes of
// 16 kHz mono WAV take 19.2 MB.
const maxPieceSeconds = 600

// pieceConcurrency is how many pieces of one recording are sent at once.
const pieceConcurrency = 3

// Config configures an Engine.
type Config struct {
	// BaseURL is the server root, without /v1. Default "https://api.openai.com".
	BaseURL string
	// APIKey is sent as a bearer token; empty sends no Authorization header
	// (local servers).
	APIKey string
	// Model is the model name. Default "whisper-1".
	Model string
	// MaxFileBytes is the largest file sent in one request. A larger
	// recording is decoded and sent as WAV pieces of at most 10 minutes
	// cut at silences. Default 25,000,000, OpenAI's 25 MB limit. Smaller
	// values than MinFileBytes count as MinFileBytes.
	MaxFileBytes int64
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
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = DefaultMaxFileBytes
	}
	cfg.MaxFileBytes = max(cfg.MaxFileBytes, MinFileBytes)
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
// JSON reply. A file over MaxFileBytes goes in pieces, one request each,
// whose results are joined with their times shifted. The API gives no
// speakers, so req.Diarization is ignored.
func (e *Engine) Transcribe(ctx context.Context, req speech.Request) (*speech.Result, error) {
	info, err := os.Stat(req.Path)
	if err != nil {
		return nil, readError(err)
	}
	if info.Size() > e.cfg.MaxFileBytes {
		return e.transcribePieces(ctx, req)
	}
	data, err := os.ReadFile(req.Path)
	if err != nil {
		return nil, readError(err)
	}
	contentType := req.ContentType
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	return e.send(ctx, data, uploadName(req), contentType, req.Language)
}

// send posts one file and maps the reply.
func (e *Engine) send(ctx context.Context, data []byte, name, contentType, language string) (*speech.Result, error) {
	body, formType, err := e.form(data, name, contentType, language)
	if err != nil {
		return nil, err
	}
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost,
		e.cfg.BaseURL+"/v1/audio/transcriptions", body)
	if err != nil {
		return nil, &speech.Error{Code: speech.CodeProcessingError,
			Message: "invalid whisper base URL " + e.cfg.BaseURL, Err: err}
	}
	httpReq.Header.Set("Content-Type", formType)
	if e.cfg.APIKey != "" {
		httpReq.Header.Set("Authorization", "Bearer "+e.cfg.APIKey)
	}

	started := time.Now()
	resp, err := e.cfg.HTTPClient.Do(httpReq)
	if err != nil {
		return nil, speech.TransportError(Name, err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, speech.TransportError(Name, err)
	}
	e.cfg.Logger.Debug("speech.whisper.response", "status", resp.StatusCode, "bytes_sent", len(data),
		"elapsed_ms", time.Since(started).Milliseconds())
	if resp.StatusCode != http.StatusOK {
		return nil, replyError(resp, reply)
	}

	var verbose verboseJSON
	if err := json.Unmarshal(reply, &verbose); err != nil {
		return nil, &speech.Error{Code: speech.CodeProcessingError, Retryable: true,
			Message: "whisper reply is not verbose JSON", Err: err}
	}
	return mapReply(&verbose, language), nil
}

// transcribePieces decodes req.Path to 16 kHz mono PCM in a temporary
// file, cuts it at silences into pieces that fit MaxFileBytes as WAV, and
// sends them, pieceConcurrency at once. Without a requested language, the
// first piece's detected language is sent with the others, so a quiet
// piece is not read as another language.
func (e *Engine) transcribePieces(ctx context.Context, req speech.Request) (*speech.Result, error) {
	dir, err := os.MkdirTemp("", "bota-whisper-")
	if err != nil {
		return nil, readError(err)
	}
	defer os.RemoveAll(dir)
	pcm, err := speech.DecodeTemp(ctx, req.Path, dir)
	if err != nil {
		return nil, err
	}
	defer pcm.Close()
	spans, samples, err := pieceSpans(pcm, e.cfg.MaxFileBytes)
	if err != nil {
		return nil, readError(err)
	}

	results := make([]*speech.Result, len(spans))
	sendPiece := func(ctx context.Context, i int, language string) error {
		span := spans[i]
		data := make([]byte, wavHeaderBytes+2*(span.End-span.Start))
		writeWAVHeader(data, span.End-span.Start)
		if _, err := pcm.ReadAt(data[wavHeaderBytes:], 2*int64(span.Start)); err != nil {
			return readError(err)
		}
		res, err := e.send(ctx, data, fmt.Sprintf("audio-%03d.wav", i), "audio/wav", language)
		if err != nil {
			return err
		}
		offset, _ := span.Seconds(audio.SampleRate)
		shift(res, offset)
		results[i] = res
		return nil
	}

	if err := sendPiece(ctx, 0, req.Language); err != nil {
		return nil, err
	}
	language := req.Language
	if language == "" {
		language = results[0].Language
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pieceConcurrency)
	for i := 1; i < len(spans); i++ {
		g.Go(func() error { return sendPiece(gctx, i, language) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	joined := join(results)
	joined.DurationMs = int64(samples) * 1000 / audio.SampleRate
	e.cfg.Logger.Debug("speech.whisper.pieces", "pieces", len(spans), "duration_ms", joined.DurationMs)
	return joined, nil
}

// pieceSpans cuts the raw PCM in r into spans whose WAV fits maxBytes.
// The cuts leave a second of room, so that a last piece under a second
// joins the one before it: OpenAI rejects audio under 0.1 s as too short.
func pieceSpans(r io.Reader, maxBytes int64) ([]audio.Span, int, error) {
	seconds := min(maxPieceSeconds, float64(maxBytes-wavHeaderBytes)/(2*audio.SampleRate))
	spans, samples, err := audio.SplitPCM(bufio.NewReaderSize(r, 1<<16), audio.SampleRate, seconds-1)
	if err != nil {
		return nil, samples, err
	}
	if n := len(spans); n > 1 && spans[n-1].End-spans[n-1].Start < audio.SampleRate {
		spans[n-2].End = spans[n-1].End
		spans = spans[:n-1]
	}
	return spans, samples, nil
}

// shift moves a piece's segments and words by offset seconds.
func shift(res *speech.Result, offset float64) {
	for i := range res.Segments {
		seg := &res.Segments[i]
		seg.Start, seg.End = seg.Start+offset, seg.End+offset
		for j := range seg.Words {
			seg.Words[j].Start += offset
			seg.Words[j].End += offset
		}
	}
}

// join puts the pieces' results in one: segments in order, texts joined
// with spaces, the mean segment confidence and the first piece's language.
func join(results []*speech.Result) *speech.Result {
	joined := &speech.Result{Segments: []speech.Segment{}, Language: results[0].Language}
	var texts []string
	var confSum float64
	for _, res := range results {
		for _, seg := range res.Segments {
			confSum += seg.Confidence
			joined.Segments = append(joined.Segments, seg)
		}
		if res.Text != "" {
			texts = append(texts, res.Text)
		}
	}
	joined.Text = strings.Join(texts, " ")
	if len(joined.Segments) > 0 {
		joined.Confidence = confSum / float64(len(joined.Segments))
	}
	return joined
}

// wavHeaderBytes is the size of a canonical PCM WAV header.
const wavHeaderBytes = 44

// writeWAVHeader fills the first 44 bytes of b with the header of 16 kHz
// mono 16-bit PCM holding samples samples.
func writeWAVHeader(b []byte, samples int) {
	size := uint32(2 * samples)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], 36+size)
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16) // fmt chunk size
	binary.LittleEndian.PutUint16(b[20:], 1)  // PCM
	binary.LittleEndian.PutUint16(b[22:], 1)  // mono
	binary.LittleEndian.PutUint32(b[24:], audio.SampleRate)
	binary.LittleEndian.PutUint32(b[28:], 2*audio.SampleRate) // bytes per second
	binary.LittleEndian.PutUint16(b[32:], 2)                  // bytes per frame
	binary.LittleEndian.PutUint16(b[34:], 16)                 // bits per sample
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], size)
}

// readError reports a failed read or write of local audio as retryable.
func readError(err error) error {
	return &speech.Error{Code: speech.CodeProcessingError, Retryable: true,
		Message: "reading the audio file failed", Err: err}
}

// form builds the multipart body in memory; data is at most MaxFileBytes.
func (e *Engine) form(data []byte, name, contentType, language string) (io.Reader, string, error) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fields := [][2]string{
		{"model", e.cfg.Model},
		{"response_format", "verbose_json"},
		{"timestamp_granularities[]", "word"},
		{"timestamp_granularities[]", "segment"},
	}
	if lang := speech.BaseLanguage(language); lang != "" {
		fields = append(fields, [2]string{"language", lang})
	}
	for _, f := range fields {
		if err := w.WriteField(f[0], f[1]); err != nil {
			return nil, "", fmt.Errorf("write form field %s: %w", f[0], err)
		}
	}
	header := make(textproto.MIMEHeader)
	header.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, name))
	header.Set("Content-Type", contentType)
	part, err := w.CreatePart(header)
	if err != nil {
		return nil, "", fmt.Errorf("create file part: %w", err)
	}
	if _, err := part.Write(data); err != nil {
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
