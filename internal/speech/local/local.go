// Package local transcribes audio offline with CMU pocketsphinx
// (pocketsphinx_continuous from Debian's pocketsphinx package, with the
// pocketsphinx-en-us model), so it handles English only.
package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/botaserver/bota/internal/audio"
	"github.com/botaserver/bota/internal/speech"
)

// Name is the engine name reported in transcriptions.
const Name = "local"

// maxPieceSeconds is the longest audio one recogniser process gets. Longer
// audio is cut at silences into pieces of 20 to 30 seconds that run in
// parallel.
const maxPieceSeconds = 30

// minSamples is one second of audio: pocketsphinx returns nothing useful for
// less.
const minSamples = audio.SampleRate

// Config configures an Engine.
type Config struct {
	// Workers is the maximum number of recogniser processes running at once
	// across all calls to Transcribe. Default 2.
	Workers int
	// Command is the recogniser program. Default "pocketsphinx_continuous".
	Command string
	// Args are extra recogniser options, such as "-hmm DIR -lm FILE -dict
	// FILE" for another model. Default none (the package's en-us model).
	Args []string
	// Logger receives debug records per piece. Default slog.Default().
	Logger *slog.Logger
}

// Engine runs pocketsphinx on local files. It is safe for concurrent use.
type Engine struct {
	command string
	args    []string
	logger  *slog.Logger
	slots   chan struct{}
	running atomic.Int64
	peak    atomic.Int64
}

var _ speech.Engine = (*Engine)(nil)

// New returns an engine with cfg's defaults applied.
func New(cfg Config) *Engine {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Command == "" {
		cfg.Command = "pocketsphinx_continuous"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Engine{
		command: cfg.Command,
		args:    cfg.Args,
		logger:  cfg.Logger.With("engine", Name),
		slots:   make(chan struct{}, cfg.Workers),
	}
}

// Name returns "local".
func (e *Engine) Name() string { return Name }

// Running returns the number of recogniser processes running now.
func (e *Engine) Running() int { return int(e.running.Load()) }

// Peak returns the highest number of recogniser processes that ran at once
// since the engine was made.
func (e *Engine) Peak() int { return int(e.peak.Load()) }

// Transcribe decodes req.Path with ffmpeg to a temporary raw PCM file, cuts
// audio longer than 30 seconds at silences, recognises the pieces in
// parallel and joins their words into segments split at pauses. Memory
// holds the words and the frame energies of SplitPCM, not the samples.
// Speakers are not distinguished, so req.Diarization is ignored.
func (e *Engine) Transcribe(ctx context.Context, req speech.Request) (*speech.Result, error) {
	if lang := speech.BaseLanguage(req.Language); lang != "" && lang != "en" {
		return nil, &speech.Error{Code: speech.CodeProcessingError,
			Message: fmt.Sprintf("the local engine recognises English (en) only, not %q", req.Language)}
	}

	if _, err := audio.ProbeStreams(ctx, req.Path); err != nil {
		return nil, speech.AudioError(ctx, err)
	}
	dir, err := os.MkdirTemp("", "bota-local-")
	if err != nil {
		return nil, &speech.Error{Code: speech.CodeProcessingError,
			Message: "creating a temporary directory failed", Retryable: true, Err: err}
	}
	defer os.RemoveAll(dir)

	pcm, err := speech.DecodeTemp(ctx, req.Path, dir)
	if err != nil {
		return nil, err
	}
	defer pcm.Close()
	spans, samples, err := audio.SplitPCM(bufio.NewReaderSize(pcm, 1<<16), audio.SampleRate, maxPieceSeconds)
	if err != nil {
		return nil, readError(err)
	}
	if samples < minSamples {
		return nil, &speech.Error{Code: speech.CodeAudioTooShort,
			Message: fmt.Sprintf("audio is %d ms long, the minimum is 1000 ms",
				samples*1000/audio.SampleRate)}
	}

	started := time.Now()
	words, err := e.recognise(ctx, dir, pcm, spans)
	if err != nil {
		return nil, err
	}
	durationMs := int64(samples) * 1000 / audio.SampleRate
	e.logger.Debug("speech.local.transcribed", "duration_ms", durationMs, "pieces", len(spans),
		"elapsed_ms", time.Since(started).Milliseconds(), "words", len(words))
	return buildResult(words, durationMs), nil
}

// recognise runs one recogniser per span of the raw PCM in pcm, at most
// len(e.slots) at once across the engine, and returns the words in time
// order. A piece's samples are copied to its own file in dir only once it
// has a slot, so the pieces waiting take no disk space.
func (e *Engine) recognise(ctx context.Context, dir string, pcm io.ReaderAt, spans []audio.Span) ([]speech.Word, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	results := make([][]speech.Word, len(spans))
	errs := make([]error, len(spans))
	var wg sync.WaitGroup
	for i, span := range spans {
		// select picks at random when both cases are ready, so check for a
		// failed sibling or a cancelled job before taking a slot too.
		if ctx.Err() != nil {
			errs[i] = canceled(ctx)
			break
		}
		select {
		case e.slots <- struct{}{}:
		case <-ctx.Done():
			errs[i] = canceled(ctx)
		}
		if errs[i] != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-e.slots }()
			path := filepath.Join(dir, fmt.Sprintf("piece%05d.raw", i))
			piece := io.NewSectionReader(pcm, 2*int64(span.Start), 2*int64(span.End-span.Start))
			results[i], errs[i] = e.recognisePiece(ctx, path, piece)
			if errs[i] != nil {
				cancel()
			}
			offset, _ := span.Seconds(audio.SampleRate)
			for j := range results[i] {
				results[i][j].Start = roundMs(results[i][j].Start + offset)
				results[i][j].End = roundMs(results[i][j].End + offset)
			}
		})
	}
	wg.Wait()

	if err := firstError(errs); err != nil {
		return nil, err
	}
	var words []speech.Word
	for _, r := range results {
		words = append(words, r...)
	}
	return words, nil
}

// recognisePiece copies the raw PCM of piece to path, runs the recogniser
// on it and removes the file. The caller holds a worker slot.
func (e *Engine) recognisePiece(ctx context.Context, path string, piece io.Reader) ([]speech.Word, error) {
	if err := writePiece(path, piece); err != nil {
		return nil, err
	}
	defer os.Remove(path)
	n := e.running.Add(1)
	defer e.running.Add(-1)
	for {
		p := e.peak.Load()
		if n <= p || e.peak.CompareAndSwap(p, n) {
			break
		}
	}

	started := time.Now()
	out, err := e.runRecogniser(ctx, path)
	if err != nil {
		return nil, err
	}
	words, err := parseOutput(out)
	if err != nil {
		return nil, &speech.Error{Code: speech.CodeProcessingError,
			Message: "reading the recogniser output failed", Err: err}
	}
	e.logger.Debug("speech.local.piece", "path", filepath.Base(path),
		"elapsed_ms", time.Since(started).Milliseconds(), "words", len(words))
	return words, nil
}

// writePiece copies piece to a new file at path.
func writePiece(path string, piece io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return writeError(err)
	}
	_, err = io.Copy(f, piece)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return writeError(err)
	}
	return nil
}

// writeError reports a failed write of temporary audio as retryable: the
// disk, not the audio, is at fault.
func writeError(err error) error {
	return &speech.Error{Code: speech.CodeProcessingError,
		Message: "writing audio for the recogniser failed", Retryable: true, Err: err}
}

// readError reports a failed read of temporary audio as retryable.
func readError(err error) error {
	return &speech.Error{Code: speech.CodeProcessingError,
		Message: "reading the decoded audio failed", Retryable: true, Err: err}
}

// canceled reports a stopped transcription as retryable: the job was
// interrupted (shutdown, timeout), not the audio at fault.
func canceled(ctx context.Context) error {
	return &speech.Error{Code: speech.CodeProcessingError,
		Message: "transcription was interrupted", Retryable: true, Err: context.Cause(ctx)}
}

// firstError returns the first error that is not a cancellation caused by a
// sibling's failure, or the first cancellation when that is all there is.
func firstError(errs []error) error {
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}
