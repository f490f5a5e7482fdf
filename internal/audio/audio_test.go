package audio_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/botaserver/bota/internal/audio"
)

// clip is a 16 kHz mono WAV of 7.100 s from Debian's pocketsphinx-testdata.
const clip = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"

const clipMs = 7100

func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not on PATH (install Debian package ffmpeg): %v", tool, err)
		}
	}
	if _, err := os.Stat(clip); err != nil {
		t.Fatalf("test clip missing (install Debian package pocketsphinx-testdata): %v", err)
	}
}

func ffmpeg(t *testing.T, args ...string) {
	t.Helper()
	full := append([]string{"-nostdin", "-v", "error", "-y"}, args...)
	out, err := exec.Command("ffmpeg", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
}

func TestProbeDurationOfConversions(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	cases := []struct {
		name   string
		args   []string
		format string
		codec  string
	}{
		{"clip.wav", nil, "wav", "pcm_s16le"},
		{"clip.opus", []string{"-c:a", "libopus", "-b:a", "32k"}, "ogg", "opus"},
		{"clip.mp3", []string{"-c:a", "libmp3lame", "-b:a", "64k"}, "mp3", "mp3"},
		{"clip.m4a", []string{"-c:a", "aac", "-b:a", "64k"}, "mov,mp4,m4a,3gp,3g2,mj2", "aac"},
		{"clip.webm", []string{"-c:a", "libopus", "-b:a", "32k"}, "matroska,webm", "opus"},
		{"clip.flac", []string{"-c:a", "flac"}, "flac", "flac"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			ffmpeg(t, append(append([]string{"-i", clip}, tc.args...), path)...)

			info, err := audio.Probe(context.Background(), path)
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if diff := math.Abs(float64(info.DurationMs - clipMs)); diff > 50 {
				t.Errorf("DurationMs = %d, want %d within 50 ms", info.DurationMs, clipMs)
			}
			if info.Format != tc.format {
				t.Errorf("Format = %q, want %q", info.Format, tc.format)
			}
			if info.Codec != tc.codec {
				t.Errorf("Codec = %q, want %q", info.Codec, tc.codec)
			}
			if !info.HasAudio {
				t.Error("HasAudio = false, want true")
			}
		})
	}
}

func TestProbeClassifiesBadFiles(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	rng := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 100000)
	for i := range noise {
		noise[i] = byte(rng.IntN(256))
	}

	opus := filepath.Join(dir, "good.opus")
	ffmpeg(t, "-i", clip, "-c:a", "libopus", "-b:a", "32k", opus)
	opusBytes, err := os.ReadFile(opus)
	if err != nil {
		t.Fatal(err)
	}
	// Keep the Ogg header pages, replace every audio page with noise.
	garbled := append(bytes.Clone(opusBytes[:200]), noise[:len(opusBytes)-200]...)
	png := filepath.Join(dir, "image.png")
	ffmpeg(t, "-f", "lavfi", "-i", "color=c=red:s=32x32", "-frames:v", "1", png)
	video := filepath.Join(dir, "video.mp4")
	ffmpeg(t, "-f", "lavfi", "-i", "testsrc=d=1:s=64x64", "-c:v", "libx264", video)

	cases := []struct {
		name string
		path string
		want error
	}{
		{"random bytes", write("noise.bin", noise), audio.ErrUnsupportedFormat},
		{"text file", write("notes.txt", []byte("hello, this is not audio\n")),
			audio.ErrUnsupportedFormat},
		{"empty file", write("empty.opus", nil), audio.ErrCorrupt},
		{"garbled ogg", write("garbled.opus", garbled), audio.ErrCorrupt},
		{"truncated ogg", write("truncated.opus", opusBytes[:3000]), audio.ErrCorrupt},
		{"image only", png, audio.ErrCorrupt},
		{"video only", video, audio.ErrCorrupt},
		{"missing file", filepath.Join(dir, "absent.opus"), fs.ErrNotExist},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := audio.Probe(context.Background(), tc.path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Probe error = %v, want %v", err, tc.want)
			}
			for _, other := range []error{audio.ErrCorrupt, audio.ErrUnsupportedFormat} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("Probe error %v also matches %v", err, other)
				}
			}
		})
	}
}

func TestDecodePCMSampleCount(t *testing.T) {
	requireTools(t)
	samples, err := audio.ReadPCM(context.Background(), clip)
	if err != nil {
		t.Fatalf("ReadPCM: %v", err)
	}
	if want := clipMs * audio.SampleRate / 1000; len(samples) != want {
		t.Errorf("decoded %d samples, want %d", len(samples), want)
	}
	var peak int16
	for _, s := range samples {
		peak = max(peak, s)
	}
	if peak < 1000 {
		t.Errorf("peak amplitude %d, want speech well above silence", peak)
	}
}

func TestDecodePCMCanceled(t *testing.T) {
	requireTools(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	err := audio.DecodePCM(ctx, clip, &buf)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("DecodePCM error = %v, want context.Canceled", err)
	}
}

func TestConcatKeepsDuration(t *testing.T) {
	requireTools(t)
	for _, ext := range []string{"opus", "wav", "mp3", "webm"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			var chunks []string
			// Four chunks of 1.5 s, encoded separately as a streaming device does.
			for i := range 4 {
				chunk := filepath.Join(dir, fmt.Sprintf("chunk%d.%s", i+1, ext))
				ffmpeg(t, "-ss", fmtSeconds(float64(i)*1.5), "-t", "1.5", "-i", clip, chunk)
				chunks = append(chunks, chunk)
			}
			format := ext
			if ext == "opus" {
				format = "ogg"
			}
			out := filepath.Join(dir, "joined."+ext)
			if err := audio.Concat(context.Background(), chunks, out, format); err != nil {
				t.Fatalf("Concat: %v", err)
			}
			info, err := audio.Probe(context.Background(), out)
			if err != nil {
				t.Fatalf("Probe joined: %v", err)
			}
			if diff := math.Abs(float64(info.DurationMs - 6000)); diff > 50 {
				t.Errorf("joined DurationMs = %d, want 6000 within 50 ms", info.DurationMs)
			}
		})
	}
}

func TestConcatRejectsBadInput(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.opus")
	if err := os.WriteFile(bad, []byte("not audio at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := audio.Concat(context.Background(), []string{clip, bad}, filepath.Join(dir, "o.wav"), "wav")
	if err == nil {
		t.Fatal("Concat of a text file succeeded, want an error")
	}
	if err := audio.Concat(context.Background(), nil, filepath.Join(dir, "o.wav"), ""); err == nil {
		t.Fatal("Concat of no inputs succeeded, want an error")
	}
}

func fmtSeconds(s float64) string {
	return strconv.FormatFloat(s, 'f', 3, 64)
}

// A WAV cut short keeps its header's original size, yet ffprobe states the
// duration of the data actually there, so the header path agrees with a
// decode.
func TestProbeTruncatedWAV(t *testing.T) {
	requireTools(t)
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cut.wav")
	if err := os.WriteFile(path, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := audio.Probe(context.Background(), path)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	var pcm bytes.Buffer
	if err := audio.DecodePCM(context.Background(), path, &pcm); err != nil {
		t.Fatalf("DecodePCM: %v", err)
	}
	decoded := int64(pcm.Len()) * 1000 / 2 / audio.SampleRate
	if diff := info.DurationMs - decoded; diff < -5 || diff > 5 {
		t.Errorf("Probe duration %d ms, decoded %d ms", info.DurationMs, decoded)
	}
	if info.DurationMs < clipMs/2-100 || info.DurationMs > clipMs/2+100 {
		t.Errorf("Probe duration %d ms, want about %d", info.DurationMs, clipMs/2)
	}
}
