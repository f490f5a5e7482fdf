package audio_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/botaserver/bota/internal/audio"
)

// toneWithGaps returns seconds of a 440 Hz tone at rate, silent for 0.4 s
// from each gap start.
func toneWithGaps(rate int, seconds float64, gaps []float64) []int16 {
	pcm := make([]int16, int(seconds*float64(rate)))
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(i)/float64(rate)))
	}
	for _, g := range gaps {
		for i := int(g * float64(rate)); i < int((g+0.4)*float64(rate)); i++ {
			pcm[i] = 0
		}
	}
	return pcm
}

func TestSplitAtSilenceCutsInGaps(t *testing.T) {
	const rate = 16000
	pcm := toneWithGaps(rate, 70, []float64{12, 25, 47, 60})
	spans := audio.SplitAtSilence(pcm, rate, 30)

	if len(spans) != 3 {
		t.Fatalf("got %d spans %v, want 3", len(spans), spans)
	}
	// Windows are [20 s, 30 s] after 0, then [cut+20, cut+30], so the
	// cuts must fall in the gaps at 25 s and 47 s.
	wantGaps := []float64{25, 47}
	for i, gap := range wantGaps {
		_, end := spans[i].Seconds(rate)
		if end < gap || end > gap+0.4 {
			t.Errorf("cut %d at %.3f s, want inside the gap %.1f-%.1f s", i, end, gap, gap+0.4)
		}
	}
	checkCoverage(t, spans, len(pcm), 30*rate)
}

func TestSplitAtSilenceShortAudio(t *testing.T) {
	pcm := toneWithGaps(16000, 29.9, nil)
	spans := audio.SplitAtSilence(pcm, 16000, 30)
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	if spans[0] != (audio.Span{Start: 0, End: len(pcm)}) {
		t.Errorf("span = %v, want the whole input", spans[0])
	}
	if got := audio.SplitAtSilence(nil, 16000, 30); len(got) != 1 || got[0].End != 0 {
		t.Errorf("empty input spans = %v, want one empty span", got)
	}
}

func TestSplitAtSilenceWithoutGaps(t *testing.T) {
	const rate = 8000
	pcm := toneWithGaps(rate, 95, nil)
	spans := audio.SplitAtSilence(pcm, rate, 20)
	checkCoverage(t, spans, len(pcm), 20*rate)
	for _, s := range spans[:len(spans)-1] {
		if s.End-s.Start < 20*rate*2/3-rate/50 {
			t.Errorf("span %v shorter than two thirds of the limit", s)
		}
	}
}

func checkCoverage(t *testing.T, spans []audio.Span, n, maxLen int) {
	t.Helper()
	if spans[0].Start != 0 {
		t.Errorf("first span starts at %d, want 0", spans[0].Start)
	}
	if spans[len(spans)-1].End != n {
		t.Errorf("last span ends at %d, want %d", spans[len(spans)-1].End, n)
	}
	for i, s := range spans {
		if s.End <= s.Start {
			t.Errorf("span %d = %v is empty", i, s)
		}
		if s.End-s.Start > maxLen {
			t.Errorf("span %d = %v longer than %d samples", i, s, maxLen)
		}
		if i > 0 && s.Start != spans[i-1].End {
			t.Errorf("span %d starts at %d, previous ended at %d", i, s.Start, spans[i-1].End)
		}
	}
}

func TestSplitPCMMatchesSplitAtSilence(t *testing.T) {
	cases := []struct {
		name    string
		rate    int
		seconds float64
		gaps    []float64
		max     float64
	}{
		{"gaps", 16000, 70, []float64{12, 25, 47, 60}, 30},
		{"no gaps", 8000, 95, nil, 20},
		{"short", 16000, 29.9, nil, 30},
		{"partial last frame", 16000, 61.0123, []float64{22, 41}, 30},
		{"limit too short to search", 16000, 5, nil, 0.02},
	}
	for _, c := range cases {
		pcm := toneWithGaps(c.rate, c.seconds, c.gaps)
		want := audio.SplitAtSilence(pcm, c.rate, c.max)
		raw := audio.SamplesToBytes(pcm)
		// A trailing odd byte is not a sample, and short reads change
		// nothing.
		r := iotest.HalfReader(bytes.NewReader(append(raw, 0x7f)))
		got, n, err := audio.SplitPCM(r, c.rate, c.max)
		if err != nil {
			t.Fatalf("%s: SplitPCM: %v", c.name, err)
		}
		if n != len(pcm) {
			t.Errorf("%s: SplitPCM read %d samples, want %d", c.name, n, len(pcm))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: SplitPCM spans %v, want %v", c.name, got, want)
		}
	}
}

func TestSplitPCMReadError(t *testing.T) {
	broken := errors.New("disk gone")
	r := io.MultiReader(bytes.NewReader(make([]byte, 64000)), iotest.ErrReader(broken))
	if _, _, err := audio.SplitPCM(r, 16000, 30); !errors.Is(err, broken) {
		t.Errorf("SplitPCM error = %v, want %v", err, broken)
	}
}

// toneReader streams n bytes of a 440 Hz tone as 16 kHz PCM without
// holding them.
type toneReader struct {
	n, off int
}

func (r *toneReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(len(p), r.n-r.off)&^1]
	for i := 0; i < len(p); i += 2 {
		s := uint16(int16(8000 * math.Sin(2*math.Pi*440*float64((r.off+i)/2)/16000)))
		p[i], p[i+1] = byte(s), byte(s>>8)
	}
	r.off += len(p)
	return len(p), nil
}

// BenchmarkSplitPCM reports the memory SplitPCM allocates for one hour of
// audio (B/op) against the 115 MB of that hour's samples.
func BenchmarkSplitPCM(b *testing.B) {
	const hour = 3600 * 16000 * 2
	b.ReportAllocs()
	for b.Loop() {
		spans, _, err := audio.SplitPCM(&toneReader{n: hour}, 16000, 30)
		if err != nil {
			b.Fatal(err)
		}
		if len(spans) < 120 {
			b.Fatalf("%d spans for an hour, want at least 120", len(spans))
		}
	}
	b.ReportMetric(float64(hour)/1e6, "audio-MB")
}
