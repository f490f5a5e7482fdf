package whisper

import (
	"bytes"
	"math"
	"testing"

	"github.com/botaserver/bota/internal/audio"
)

// A recording whose cuts would leave a last piece under a second gets
// that tail joined to the piece before, still within the byte limit.
func TestPieceSpansJoinShortTail(t *testing.T) {
	// A steady tone has no quiet point, so each cut lands at the start of
	// its window: 4.8 s in windows of 2 s leaves a 0.8 s tail.
	pcm := make([]int16, 48*audio.SampleRate/10)
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(i)/audio.SampleRate))
	}
	const maxBytes = wavHeaderBytes + 3*2*audio.SampleRate

	plain, _, err := audio.SplitPCM(bytes.NewReader(audio.SamplesToBytes(pcm)), audio.SampleRate, 2)
	if err != nil {
		t.Fatal(err)
	}
	if tail := plain[len(plain)-1]; tail.End-tail.Start >= audio.SampleRate {
		t.Fatalf("plain cuts %v leave no short tail; the test needs one", plain)
	}

	spans, samples, err := pieceSpans(bytes.NewReader(audio.SamplesToBytes(pcm)), maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	if samples != len(pcm) {
		t.Errorf("samples = %d, want %d", samples, len(pcm))
	}
	if len(spans) != len(plain)-1 {
		t.Errorf("spans %v, want the %d plain cuts with the tail joined", spans, len(plain))
	}
	for i, s := range spans {
		n := s.End - s.Start
		if n < audio.SampleRate || int64(wavHeaderBytes+2*n) > maxBytes {
			t.Errorf("span %d %v is %d samples, want 1 s to the limit", i, s, n)
		}
		if i > 0 && s.Start != spans[i-1].End {
			t.Errorf("span %d starts at %d, want %d", i, s.Start, spans[i-1].End)
		}
	}
	if spans[0].Start != 0 || spans[len(spans)-1].End != len(pcm) {
		t.Errorf("spans %v do not cover the %d samples", spans, len(pcm))
	}
}
