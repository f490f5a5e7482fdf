// Package speech turns recorded audio into text through pluggable engines.
package speech

import (
	"context"
	"errors"
	"fmt"
)

// Failure codes reported in a transcription's error object.
const (
	CodeAudioTooShort     = "audio_too_short"
	CodeAudioCorrupt      = "audio_corrupt"
	CodeUnsupportedFormat = "unsupported_format"
	CodeProcessingError   = "processing_error"
)

// Engine transcribes one audio file.
type Engine interface {
	// Name is the value reported as a transcription's engine (local,
	// whisper, deepgram, assemblyai).
	Name() string
	Transcribe(ctx context.Context, req Request) (*Result, error)
}

// Request is one file to transcribe.
type Request struct {
	// Path is a local file in any container ffmpeg reads.
	Path        string
	ContentType string
	// Language is a hint such as "en" or "en-US"; empty means detect.
	Language    string
	Diarization bool
}

// Result is an engine's transcript. Times are seconds from the start.
type Result struct {
	Text       string
	Language   string
	Confidence float64
	DurationMs int64
	Segments   []Segment
}

// Segment is a stretch of speech. Speaker is empty when the engine does not
// tell speakers apart.
type Segment struct {
	Start      float64
	End        float64
	Text       string
	Speaker    string
	Confidence float64
	Words      []Word
}

// Word is one recognised word with its times.
type Word struct {
	Word       string
	Start      float64
	End        float64
	Confidence float64
}

// Error is a failure with one of the documented codes. Retryable marks
// failures worth another attempt (timeouts, rate limits, 5xx replies).
type Error struct {
	Code      string
	Message   string
	Retryable bool
	Err       error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// AsError returns err as an *Error, wrapping unknown errors as retryable
// processing errors.
func AsError(err error) *Error {
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	return &Error{Code: CodeProcessingError, Message: "transcription failed", Retryable: true, Err: err}
}
