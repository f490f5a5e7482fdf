package whisper_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/speech/speechtest"
	"github.com/botaserver/bota/internal/speech/whisper"
)

// piece is one WAV file a split recording sent.
type piece struct {
	size     int
	seconds  float64
	model    string
	language string
}

// pieceServer replies to each request with one segment spanning the WAV it
// received, named by the request's order, and records the pieces.
func pieceServer(t *testing.T) (*httptest.Server, func() []piece) {
	t.Helper()
	var mu sync.Mutex
	var pieces []piece
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, fh, err := r.FormFile("file")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer f.Close()
		data, _ := io.ReadAll(f)
		if len(data) < 44 || string(data[0:4]) != "RIFF" || string(data[8:16]) != "WAVEfmt " ||
			binary.LittleEndian.Uint32(data[24:]) != 16000 || binary.LittleEndian.Uint16(data[22:]) != 1 ||
			int(binary.LittleEndian.Uint32(data[40:])) != len(data)-44 || fh.Header.Get("Content-Type") != "audio/wav" {
			http.Error(w, `{"error":{"message":"Invalid file format."}}`, http.StatusBadRequest)
			return
		}
		seconds := float64(len(data)-44) / 32000
		mu.Lock()
		n := len(pieces)
		pieces = append(pieces, piece{size: len(data), seconds: seconds,
			model: r.FormValue("model"), language: r.FormValue("language")})
		mu.Unlock()
		text := fmt.Sprintf(" piece %d", n)
		json.NewEncoder(w).Encode(map[string]any{
			"language": "english", "duration": seconds, "text": text,
			"segments": []map[string]any{{"start": 0, "end": seconds, "text": text, "avg_logprob": -0.1}},
			"words":    []map[string]any{{"word": "piece", "start": 0, "end": seconds / 2}},
		})
	}))
	t.Cleanup(srv.Close)
	return srv, func() []piece {
		mu.Lock()
		defer mu.Unlock()
		return append([]piece(nil), pieces...)
	}
}

// A recording over MaxFileBytes goes as WAV pieces within the limit, and
// the joined result keeps every piece's text and shifts its times.
func TestTranscribeSplitsLargeFile(t *testing.T) {
	clips, err := speechtest.LibriVox()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "long.opus")
	args := []string{"-nostdin", "-v", "error", "-y"}
	for _, c := range clips {
		args = append(args, "-i", c.WAVPath)
	}
	args = append(args, "-filter_complex", fmt.Sprintf("concat=n=%d:v=0:a=1[out]", len(clips)),
		"-map", "[out]", "-c:a", "libopus", "-b:a", "32k", path)
	if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// One byte short of the Opus file: its WAV pieces, eight times larger
	// per second, are each a few seconds long.
	limit := info.Size() - 1

	srv, pieces := pieceServer(t)
	engine := whisper.New(whisper.Config{BaseURL: srv.URL, MaxFileBytes: limit})
	res, err := engine.Transcribe(context.Background(),
		speech.Request{Path: path, ContentType: "audio/opus", Language: "en-US"})
	if err != nil {
		t.Fatal(err)
	}

	got := pieces()
	t.Logf("%d bytes of Opus sent as %d WAV pieces", info.Size(), len(got))
	if len(got) < 3 {
		t.Fatalf("%d requests, want the recording in 3 or more pieces", len(got))
	}
	var total float64
	var texts []string
	for i, p := range got {
		if int64(p.size) > limit {
			t.Errorf("piece %d is %d bytes, over the %d limit", i, p.size, limit)
		}
		if p.model != "whisper-1" || p.language != "en" {
			t.Errorf("piece %d sent model %q, language %q; want whisper-1 and en", i, p.model, p.language)
		}
		if i >= len(res.Segments) {
			continue
		}
		seg := res.Segments[i]
		if math.Abs(seg.Start-total) > 1e-6 || math.Abs(seg.End-(total+p.seconds)) > 1e-6 {
			t.Errorf("segment %d spans %.3f-%.3f s, want %.3f-%.3f s", i, seg.Start, seg.End,
				total, total+p.seconds)
		}
		if len(seg.Words) != 1 || math.Abs(seg.Words[0].Start-total) > 1e-6 {
			t.Errorf("segment %d words %+v, want one starting at %.3f s", i, seg.Words, total)
		}
		total += p.seconds
		texts = append(texts, fmt.Sprintf("piece %d", i))
	}
	if len(res.Segments) != len(got) {
		t.Errorf("%d segments, want one per piece (%d)", len(res.Segments), len(got))
	}
	if want := strings.Join(texts, " "); res.Text != want {
		t.Errorf("text %q, want %q", res.Text, want)
	}
	if want := int64(total * 1000); res.DurationMs < want-1 || res.DurationMs > want+1 {
		t.Errorf("duration %d ms, want the pieces' %d ms", res.DurationMs, want)
	}
	if res.Language != "en" {
		t.Errorf("language %q, want en", res.Language)
	}
}

// A file over the limit that ffmpeg cannot read fails as unsupported,
// without a request.
func TestTranscribeSplitUnreadable(t *testing.T) {
	srv, pieces := pieceServer(t)
	path, _ := audioFile(t)
	engine := whisper.New(whisper.Config{BaseURL: srv.URL, MaxFileBytes: 10})
	_, err := engine.Transcribe(context.Background(), speech.Request{Path: path})
	se := speech.AsError(err)
	if se == nil || (se.Code != speech.CodeUnsupportedFormat && se.Code != speech.CodeAudioCorrupt) || se.Retryable {
		t.Errorf("error = %+v, want a final unsupported_format or audio_corrupt", se)
	}
	if n := len(pieces()); n != 0 {
		t.Errorf("%d requests sent for an unreadable file, want 0", n)
	}
}
