package whisper_test

import (
	"bytes"
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
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/speech/speechtest"
	"github.com/botaserver/bota/internal/speech/whisper"
)

// piece is one WAV file a split recording sent.
type piece struct {
	name     string
	size     int
	seconds  float64
	model    string
	language string
}

// pieceServer replies to each request with one segment spanning the WAV it
// received, whose text is the file's name, and records the pieces in the
// order of their names.
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
		pieces = append(pieces, piece{name: fh.Filename, size: len(data), seconds: seconds,
			model: r.FormValue("model"), language: r.FormValue("language")})
		mu.Unlock()
		text := " " + fh.Filename
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
		out := append([]piece(nil), pieces...)
		slices.SortFunc(out, func(a, b piece) int { return strings.Compare(a.name, b.name) })
		return out
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
	for range 2 {
		for _, c := range clips {
			args = append(args, "-i", c.WAVPath)
		}
	}
	args = append(args, "-filter_complex", fmt.Sprintf("concat=n=%d:v=0:a=1[out]", 2*len(clips)),
		"-map", "[out]", "-c:a", "libopus", "-b:a", "32k", path)
	if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The smallest limit: WAV pieces of about three seconds.
	const limit = whisper.MinFileBytes
	if info.Size() <= limit {
		t.Fatalf("the Opus file is %d bytes, want over %d", info.Size(), limit)
	}

	for _, language := range []string{"en-US", ""} {
		srv, pieces := pieceServer(t)
		engine := whisper.New(whisper.Config{BaseURL: srv.URL, MaxFileBytes: limit})
		res, err := engine.Transcribe(context.Background(),
			speech.Request{Path: path, ContentType: "audio/opus", Language: language})
		if err != nil {
			t.Fatal(err)
		}
		checkPieces(t, res, pieces(), limit, language)
	}
}

func checkPieces(t *testing.T, res *speech.Result, got []piece, limit int64, language string) {
	t.Helper()
	t.Logf("language %q: sent as %d WAV pieces", language, len(got))
	if len(got) < 3 {
		t.Fatalf("%d requests, want the recording in 3 or more pieces", len(got))
	}
	var total float64
	var texts []string
	for i, p := range got {
		if int64(p.size) > limit {
			t.Errorf("piece %d is %d bytes, over the %d limit", i, p.size, limit)
		}
		if p.seconds < 1 {
			t.Errorf("piece %d is %.3f s long, want at least 1 s", i, p.seconds)
		}
		// Without a requested language, the first piece's detected one
		// goes with the others.
		want := "en"
		if language == "" && i == 0 {
			want = ""
		}
		if p.model != "whisper-1" || p.language != want {
			t.Errorf("piece %d sent model %q, language %q; want whisper-1 and %q", i, p.model, p.language, want)
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
		texts = append(texts, p.name)
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
	path := filepath.Join(t.TempDir(), "rec.opus")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not audio "), 2*whisper.MinFileBytes/10), 0o600); err != nil {
		t.Fatal(err)
	}
	engine := whisper.New(whisper.Config{BaseURL: srv.URL, MaxFileBytes: whisper.MinFileBytes})
	_, err := engine.Transcribe(context.Background(), speech.Request{Path: path})
	se := speech.AsError(err)
	if se == nil || (se.Code != speech.CodeUnsupportedFormat && se.Code != speech.CodeAudioCorrupt) || se.Retryable {
		t.Errorf("error = %+v, want a final unsupported_format or audio_corrupt", se)
	}
	if n := len(pieces()); n != 0 {
		t.Errorf("%d requests sent for an unreadable file, want 0", n)
	}
}
