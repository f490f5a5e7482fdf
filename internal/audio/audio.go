// Package audio probes, decodes and joins audio files with ffprobe and ffmpeg
// (Debian package ffmpeg), which must be on PATH.
package audio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// SampleRate is the rate in Hz of the PCM that DecodePCM writes: 16 kHz mono
// signed 16-bit little-endian, the input format of speech recognisers.
const SampleRate = 16000

// Classification errors returned (wrapped) by Probe and DecodePCM.
var (
	// ErrUnsupportedFormat means ffmpeg does not recognise the container.
	ErrUnsupportedFormat = errors.New("unsupported audio format")
	// ErrCorrupt means the container is recognised but holds no audio stream
	// or no decodable audio.
	ErrCorrupt = errors.New("corrupt audio")
)

// Info describes an audio file.
type Info struct {
	// DurationMs is measured by decoding the audio stream, because container
	// headers are often wrong (MP3 encoder padding, streamed WebM without
	// a duration). PCM WAV and FLAC, whose headers are exact, take the
	// stated duration and skip the decode.
	DurationMs int64
	// Format is ffprobe's format name, such as "ogg" or "mov,mp4,m4a,3gp,3g2,mj2".
	Format string
	// Codec is the codec of the first audio stream, such as "opus".
	Codec    string
	HasAudio bool
	// headerMs is the duration the container states, kept only for
	// formats whose header is exact (PCM WAV, FLAC).
	headerMs int64
}

type probeOutput struct {
	Streams []struct {
		CodecName string `json:"codec_name"`
		CodecType string `json:"codec_type"`
	} `json:"streams"`
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
}

// Probe reads the container with ffprobe and decodes the first audio stream
// to measure its duration. A file ffmpeg does not recognise is
// ErrUnsupportedFormat; an empty file, a damaged container, a file without
// an audio stream, or one whose audio decodes to nothing is ErrCorrupt.
// With ErrCorrupt the returned Info still carries what ffprobe could read.
func Probe(ctx context.Context, path string) (Info, error) {
	info, err := ProbeStreams(ctx, path)
	if err != nil {
		return info, err
	}

	if info.headerMs > 0 {
		info.DurationMs = info.headerMs
		return info, nil
	}
	var counter countingWriter
	if err := DecodePCM(ctx, path, &counter); err != nil {
		return info, err
	}
	// Two bytes per sample at SampleRate samples per second.
	info.DurationMs = int64(math.Round(float64(counter.n) / 2 / SampleRate * 1000))
	return info, nil
}

// exactHeader reports whether the container's stated duration is exact:
// PCM WAV (computed from the data size) and FLAC (the sample count in
// STREAMINFO). Compressed formats are decoded instead, because their
// headers are often wrong (MP3 padding, streamed WebM).
func exactHeader(format string, streams []struct {
	CodecName string `json:"codec_name"`
	CodecType string `json:"codec_type"`
}) bool {
	for _, s := range streams {
		if s.CodecType != "audio" {
			continue
		}
		return (format == "wav" && strings.HasPrefix(s.CodecName, "pcm_")) ||
			(format == "flac" && s.CodecName == "flac")
	}
	return false
}

// ProbeStreams reads the container and stream list with ffprobe, without
// decoding, and classifies failures like Probe. DurationMs is left zero; it
// suits callers that decode the audio themselves.
func ProbeStreams(ctx context.Context, path string) (Info, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Info{}, fmt.Errorf("probe audio: %w", err)
	}
	if st.Size() == 0 {
		return Info{}, fmt.Errorf("probe %s: empty file: %w", path, ErrCorrupt)
	}

	cmd := exec.CommandContext(ctx, "ffprobe", "-v", "error",
		"-show_entries", "format=format_name,duration:stream=codec_type,codec_name",
		"-of", "json", "--", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return Info{}, fmt.Errorf("probe %s: %w", path, ctx.Err())
		}
		return Info{}, classify("probe", path, stderr.String(), err)
	}

	var out probeOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return Info{}, fmt.Errorf("probe %s: parse ffprobe output: %w", path, err)
	}
	info := Info{Format: out.Format.FormatName}
	if exactHeader(out.Format.FormatName, out.Streams) {
		if sec, err := strconv.ParseFloat(out.Format.Duration, 64); err == nil && sec > 0 {
			info.headerMs = int64(math.Round(sec * 1000))
		}
	}
	for _, s := range out.Streams {
		if s.CodecType == "audio" {
			info.HasAudio = true
			info.Codec = s.CodecName
			break
		}
	}
	if !info.HasAudio {
		return info, fmt.Errorf("probe %s: no audio stream in %s container: %w",
			path, info.Format, ErrCorrupt)
	}
	return info, nil
}

// DecodePCM decodes the first audio stream of path with ffmpeg and writes it
// to w as 16 kHz mono signed 16-bit little-endian PCM. Small decoding errors
// are concealed by ffmpeg; a file that yields no audio at all is ErrCorrupt
// and one ffmpeg does not recognise is ErrUnsupportedFormat.
func DecodePCM(ctx context.Context, path string, w io.Writer) error {
	cmd := exec.CommandContext(ctx, "ffmpeg", "-nostdin", "-v", "error", "-i", path,
		"-map", "0:a:0", "-ac", "1", "-ar", strconv.Itoa(SampleRate), "-f", "s16le", "-")
	counter := &countingWriter{w: w}
	var stderr bytes.Buffer
	cmd.Stdout = counter
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("decode %s: %w", path, ctx.Err())
	}
	if err != nil {
		if counter.err != nil {
			return fmt.Errorf("decode %s: write pcm: %w", path, counter.err)
		}
		return classify("decode", path, stderr.String(), err)
	}
	if counter.n == 0 {
		return fmt.Errorf("decode %s: no audio samples decoded: %w", path, ErrCorrupt)
	}
	return nil
}

// classify maps an ffprobe or ffmpeg failure to ErrUnsupportedFormat when the
// container was not recognised, and to ErrCorrupt otherwise.
func classify(op, path, stderr string, runErr error) error {
	msg := lastLine(stderr)
	var exitErr *exec.ExitError
	if !errors.As(runErr, &exitErr) {
		// The program did not run at all (missing binary, fork failure).
		return fmt.Errorf("%s %s: %w", op, path, runErr)
	}
	if strings.Contains(stderr, "Invalid data found when processing input") {
		return fmt.Errorf("%s %s: %s: %w", op, path, msg, ErrUnsupportedFormat)
	}
	return fmt.Errorf("%s %s: %s: %w", op, path, msg, ErrCorrupt)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// countingWriter counts bytes and forwards them to w when w is set.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.w == nil {
		c.n += int64(len(p))
		return len(p), nil
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}

// ReadPCM decodes path like DecodePCM and returns the samples.
// NOTE: the whole decoded audio is held in memory, 115 MB per hour.
func ReadPCM(ctx context.Context, path string) ([]int16, error) {
	var buf bytes.Buffer
	if err := DecodePCM(ctx, path, &buf); err != nil {
		return nil, err
	}
	return BytesToSamples(buf.Bytes()), nil
}

// BytesToSamples converts signed 16-bit little-endian PCM to samples; a
// trailing odd byte is dropped.
func BytesToSamples(b []byte) []int16 {
	samples := make([]int16, len(b)/2)
	for i := range samples {
		samples[i] = int16(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
	}
	return samples
}

// SamplesToBytes converts samples to signed 16-bit little-endian PCM.
func SamplesToBytes(samples []int16) []byte {
	b := make([]byte, 2*len(samples))
	for i, s := range samples {
		b[2*i] = byte(uint16(s))
		b[2*i+1] = byte(uint16(s) >> 8)
	}
	return b
}
