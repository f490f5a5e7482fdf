package processing

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/botaserver/bota/internal/model"
	"github.com/botaserver/bota/internal/speech"
)

func TestApplyResultSortsAndCleansSegments(t *testing.T) {
	tr := &model.Transcription{}
	err := applyResult(tr, &speech.Result{
		Text:       " b a ",
		Language:   "en",
		Confidence: 0.81234,
		DurationMs: 9000,
		Segments: []speech.Segment{
			{Start: 4.0, End: 5.0, Text: " b ", Confidence: 0.9,
				Words: []speech.Word{{Word: "b", Start: 4.5, End: 5}, {Word: "x", Start: 4.0, End: 4.4}}},
			{Start: 1.0, End: 2.0, Text: "a", Speaker: "SPEAKER_0"},
			{Start: 3.0001, End: 3.0004, Text: "rounds to nothing"},
			{Start: 6.0, End: 7.0, Text: "   "},
			{Start: 8.0, End: 7.5, Text: "ends first"},
		},
	})
	if err != nil {
		t.Fatalf("applyResult: %v", err)
	}
	if tr.Status != model.TranscriptionCompleted || *tr.Text != "b a" || *tr.WordCount != 2 {
		t.Errorf("status %s, text %q, word count %d", tr.Status, *tr.Text, *tr.WordCount)
	}
	if *tr.Confidence != 0.812 || *tr.DurationMs != 9000 || *tr.Language != "en" {
		t.Errorf("confidence %v, duration %d, language %s", *tr.Confidence, *tr.DurationMs, *tr.Language)
	}

	var segs []map[string]any
	if err := json.Unmarshal([]byte(*tr.Segments), &segs); err != nil {
		t.Fatalf("segments JSON %s: %v", *tr.Segments, err)
	}
	if len(segs) != 2 {
		t.Fatalf("segments = %s, want 2 kept", *tr.Segments)
	}
	if segs[0]["text"] != "a" || segs[0]["id"] != 0.0 || segs[0]["speaker"] != "SPEAKER_0" {
		t.Errorf("first segment = %v, want a with id 0 and its speaker", segs[0])
	}
	if segs[1]["text"] != "b" || segs[1]["id"] != 1.0 {
		t.Errorf("second segment = %v, want b with id 1", segs[1])
	}
	if _, has := segs[1]["speaker"]; has {
		t.Errorf("segment without a speaker has key speaker: %v", segs[1])
	}
	words, _ := segs[1]["words"].([]any)
	if len(words) != 2 || words[0].(map[string]any)["word"] != "x" {
		t.Errorf("words = %v, want sorted by start", words)
	}
	if _, has := segs[0]["words"]; has {
		t.Errorf("segment without words has key words: %v", segs[0])
	}
}

func TestApplyResultKeepsRequestedLanguage(t *testing.T) {
	hint := "de"
	tr := &model.Transcription{Language: &hint}
	if err := applyResult(tr, &speech.Result{Segments: []speech.Segment{}}); err != nil {
		t.Fatal(err)
	}
	if *tr.Language != "de" || *tr.Segments != "[]" || *tr.WordCount != 0 || *tr.Text != "" {
		t.Errorf("language %s, segments %s, words %d, text %q", *tr.Language, *tr.Segments,
			*tr.WordCount, *tr.Text)
	}
	if tr.DurationMs != nil {
		t.Errorf("duration = %d, want nil when the engine gives none", *tr.DurationMs)
	}
}

// ffmpegFile writes the output of ffmpeg with args to a temporary file
// named name.
func ffmpegFile(t *testing.T, name string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	args = append([]string{"-nostdin", "-loglevel", "error", "-y"}, append(args, out)...)
	if msg, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v: %s", args, err, msg)
	}
	return out
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckAudio(t *testing.T) {
	sine := func(seconds string) []string {
		return []string{"-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=" + seconds}
	}
	opus := ffmpegFile(t, "a.opus", append(sine("3"), "-c:a", "libopus", "-b:a", "32k")...)
	wav := ffmpegFile(t, "a.wav", sine("3")...)
	aiff := ffmpegFile(t, "a.aiff", sine("3")...)
	video := ffmpegFile(t, "v.mp4", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=2",
		"-c:v", "mpeg4")
	png, _ := base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf" +
		"FcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
	garbage := make([]byte, 32<<10)
	rand.NewChaCha8([32]byte{7}).Read(garbage)
	full, err := os.ReadFile(opus)
	if err != nil {
		t.Fatal(err)
	}
	// The Ogg header survives and the audio pages are cut.
	truncated := full[:200]

	ms := func(v int64) *int64 { return &v }
	cases := []struct {
		name     string
		path     string
		duration *int64
		code     string
	}{
		{"opus", opus, ms(3000), ""},
		{"wav", wav, ms(3000), ""},
		{"duration unknown", opus, nil, ""},
		{"too short", opus, ms(999), speech.CodeAudioTooShort},
		{"aiff", aiff, ms(3000), speech.CodeUnsupportedFormat},
		{"video without sound", video, nil, speech.CodeUnsupportedFormat},
		{"png", writeFile(t, "i.mp3", png), nil, speech.CodeUnsupportedFormat},
		{"random bytes", writeFile(t, "r.opus", garbage), nil, speech.CodeAudioCorrupt},
		{"empty", writeFile(t, "e.opus", nil), nil, speech.CodeAudioCorrupt},
		{"truncated ogg", writeFile(t, "t.opus", truncated), nil, speech.CodeAudioCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkAudio(context.Background(), c.path,
				&model.Media{MimeType: "audio/opus", DurationMs: c.duration})
			if c.code == "" {
				if err != nil {
					t.Errorf("checkAudio = %v, want nil", err)
				}
				return
			}
			var se *speech.Error
			if !errors.As(err, &se) {
				t.Fatalf("checkAudio = %v, want a *speech.Error with %s", err, c.code)
			}
			if se.Code != c.code || se.Retryable || se.Message == "" {
				t.Errorf("checkAudio = %+v, want %s, not retryable, with a message", se, c.code)
			}
		})
	}
}

func TestCheckAudioNamesFormat(t *testing.T) {
	aiff := ffmpegFile(t, "a.aiff", "-f", "lavfi", "-i", "sine=duration=2")
	err := checkAudio(context.Background(), aiff, &model.Media{MimeType: "audio/wav"})
	if err == nil || !strings.Contains(err.Error(), "aiff format is not supported") {
		t.Errorf("checkAudio = %v, want the aiff format named", err)
	}
}
