package processing

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/botaserver/bota/internal/audio"
	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/speech"
)

// minDurationMs is the shortest audio a transcription accepts.
const minDurationMs = 1000

// supportedContainers are ffprobe's format names for the containers of the
// API's audio content types: Ogg (audio/opus, audio/ogg), WAV, MP3
// (audio/mpeg), MP4 (audio/mp4, AAC in MP4), ADTS AAC, WebM and FLAC.
var supportedContainers = []string{
	"ogg", "wav", "mp3", "mov,mp4,m4a,3gp,3g2,mj2", "aac", "matroska,webm", "flac",
}

// checkAudio classifies the downloaded file before any engine runs on it, so
// every engine, local or hosted, fails the same input with the same code:
//
//   - bytes that ffmpeg recognises as no format at all: audio_corrupt,
//     because upload-url accepts only audio content types, so the upload
//     claimed to be audio;
//   - a recognised file with no audio stream (an image, a video without
//     sound) or an audio container outside the API's content types (AIFF,
//     AMR, WMA): unsupported_format;
//   - a damaged container with an audio stream: audio_corrupt;
//   - audio shorter than one second, as measured at upload-complete:
//     audio_too_short.
func checkAudio(ctx context.Context, path string, m *model.Media) error {
	info, err := audio.ProbeStreams(ctx, path)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return &speech.Error{Code: speech.CodeProcessingError, Message: "transcription was interrupted",
			Retryable: true, Err: err}
	case errors.Is(err, audio.ErrUnsupportedFormat):
		return &speech.Error{Code: speech.CodeAudioCorrupt, Err: err,
			Message: "the file is not readable as " + m.MimeType + " or any other audio format"}
	case errors.Is(err, audio.ErrCorrupt) && info.Format != "" && !info.HasAudio:
		return &speech.Error{Code: speech.CodeUnsupportedFormat, Err: err,
			Message: "the file, in the " + formatName(info.Format) + " format, has no audio stream"}
	case errors.Is(err, audio.ErrCorrupt):
		return &speech.Error{Code: speech.CodeAudioCorrupt, Err: err,
			Message: "the audio file is damaged or contains no audio"}
	default:
		// ffprobe did not run (missing program, fork failure): not the
		// audio's fault, so worth another attempt.
		return &speech.Error{Code: speech.CodeProcessingError, Message: "probing the audio failed",
			Retryable: true, Err: err}
	}
	if !slices.Contains(supportedContainers, info.Format) {
		return fail(speech.CodeUnsupportedFormat, "the %s format is not supported; upload "+
			"Opus or Ogg, WAV, MP3, MP4 or AAC, WebM or FLAC", formatName(info.Format))
	}
	if m.DurationMs != nil && *m.DurationMs < minDurationMs {
		return fail(speech.CodeAudioTooShort, "audio is %d ms long, the minimum is %d ms",
			*m.DurationMs, minDurationMs)
	}
	return nil
}

// formatName shortens ffprobe's format list ("mov,mp4,m4a,...") and image
// pipes ("png_pipe") to one name.
func formatName(format string) string {
	name, _, _ := strings.Cut(format, ",")
	return strings.TrimSuffix(name, "_pipe")
}
