package audio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Concat joins inputs, in order, into out with ffmpeg's concat demuxer. The
// audio is decoded and encoded again, because copying Ogg Opus streams keeps
// each input's encoder delay and padding (about 15 ms per input) and so
// stretches the result. format is an ffmpeg muxer name such as "ogg",
// "opus", "webm", "mp3", "wav", "flac" or "ipod"; empty means ffmpeg picks
// it from out's extension. Each input is checked with ffprobe first and a
// bad one fails the whole call with ErrUnsupportedFormat or ErrCorrupt. The codec follows from the format (see
// encoderArgs).
func Concat(ctx context.Context, inputs []string, out, format string) error {
	if len(inputs) == 0 {
		return errors.New("concat audio: no inputs")
	}
	dir, err := os.MkdirTemp("", "bota-concat-")
	if err != nil {
		return fmt.Errorf("concat audio: %w", err)
	}
	defer os.RemoveAll(dir)

	var list strings.Builder
	for _, in := range inputs {
		// The concat demuxer opens inputs lazily and skips one it cannot
		// read without failing, so each input is checked first.
		if _, err := ProbeStreams(ctx, in); err != nil {
			return fmt.Errorf("concat audio: %w", err)
		}
		abs, err := filepath.Abs(in)
		if err != nil {
			return fmt.Errorf("concat audio: %w", err)
		}
		// The concat list quotes paths in single quotes; a quote inside
		// a path is written as '\''.
		fmt.Fprintf(&list, "file '%s'\n", strings.ReplaceAll(abs, "'", `'\''`))
	}
	listPath := filepath.Join(dir, "inputs.txt")
	if err := os.WriteFile(listPath, []byte(list.String()), 0o600); err != nil {
		return fmt.Errorf("concat audio: %w", err)
	}

	if format == "" {
		format = strings.TrimPrefix(filepath.Ext(out), ".")
	}
	args := []string{"-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0",
		"-i", listPath, "-map", "0:a"}
	args = append(args, encoderArgs(format)...)
	if format != "" {
		args = append(args, "-f", muxerName(format))
	}
	args = append(args, out)
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("concat audio into %s: %w", out, ctx.Err())
		}
		return classify("concat into "+out, strings.Join(inputs, ", "), stderr.String(), err)
	}
	return nil
}

// encoderArgs returns the codec options for a muxer or file extension.
// Lossy formats get speech-grade bitrates; unknown formats use ffmpeg's
// default codec for the muxer.
func encoderArgs(format string) []string {
	switch format {
	case "ogg", "opus", "oga", "webm":
		return []string{"-c:a", "libopus", "-b:a", "32k"}
	case "mp3":
		return []string{"-c:a", "libmp3lame", "-b:a", "64k"}
	case "wav":
		return []string{"-c:a", "pcm_s16le"}
	case "flac":
		return []string{"-c:a", "flac"}
	case "ipod", "mp4", "m4a", "adts", "aac":
		return []string{"-c:a", "aac", "-b:a", "64k"}
	}
	return nil
}

// muxerName maps file extensions that are not muxer names to the muxer.
func muxerName(format string) string {
	switch format {
	case "oga":
		return "ogg"
	case "m4a":
		return "ipod"
	case "aac":
		return "adts"
	}
	return format
}
