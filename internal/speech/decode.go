package speech

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"

	"github.com/botaserver/bota/internal/audio"
)

// DecodeTemp decodes the file at path with ffmpeg to 16 kHz mono signed
// 16-bit PCM in a new file audio.raw in dir, and returns that file open at
// its start. The caller closes it. Failures are *Error, as AudioError maps
// them.
func DecodeTemp(ctx context.Context, path, dir string) (*os.File, error) {
	pcm, err := os.Create(filepath.Join(dir, "audio.raw"))
	if err != nil {
		return nil, &Error{Code: CodeProcessingError, Retryable: true,
			Message: "creating a file for the decoded audio failed", Err: err}
	}
	if err := audio.DecodePCM(ctx, path, pcm); err != nil {
		pcm.Close()
		return nil, AudioError(ctx, err)
	}
	if _, err := pcm.Seek(0, io.SeekStart); err != nil {
		pcm.Close()
		return nil, AudioError(ctx, err)
	}
	return pcm, nil
}

// AudioError maps a failure of the audio package to an *Error: a format
// ffmpeg does not know is unsupported_format, a damaged file audio_corrupt,
// and anything else, a stopped job included, a retryable
// processing_error.
func AudioError(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return &Error{Code: CodeProcessingError, Retryable: true,
			Message: "transcription was interrupted", Err: context.Cause(ctx)}
	case errors.Is(err, audio.ErrUnsupportedFormat):
		return &Error{Code: CodeUnsupportedFormat, Message: "the audio format is not supported", Err: err}
	case errors.Is(err, audio.ErrCorrupt):
		return &Error{Code: CodeAudioCorrupt, Message: "the audio file is damaged or contains no audio", Err: err}
	}
	return &Error{Code: CodeProcessingError, Retryable: true, Message: "reading the audio failed", Err: err}
}
