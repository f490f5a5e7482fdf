package audio_test

import (
	"math"
	"testing"

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
