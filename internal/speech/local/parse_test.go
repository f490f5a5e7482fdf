package local

import (
	"testing"

	"github.com/botaserver/bota/internal/speech"
)

const sampleOutput = `he was not an illness those young man
<s> 0.000 0.060 0.999500
<sil> 0.070 0.200 0.694306
he 0.210 0.320 0.998701
was(2) 0.330 0.540 0.999800
[SPEECH] 0.980 1.100 0.535598
++NOISE++ 1.100 1.200 0.5
an(2) 1.210 1.290 0.472940
</s> 2.800 2.970 1.000000
one two three four
man 3.500 3.790 0.905008
`

func TestParseOutputDropsFillers(t *testing.T) {
	words, err := parseOutput([]byte(sampleOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := []speech.Word{
		{Word: "he", Start: 0.21, End: 0.32, Confidence: 0.998701},
		{Word: "was", Start: 0.33, End: 0.54, Confidence: 0.9998},
		{Word: "an", Start: 1.21, End: 1.29, Confidence: 0.47294},
		{Word: "man", Start: 3.5, End: 3.79, Confidence: 0.905008},
	}
	if len(words) != len(want) {
		t.Fatalf("got %d words %v, want %d", len(words), words, len(want))
	}
	for i := range want {
		if words[i] != want[i] {
			t.Errorf("word %d = %+v, want %+v", i, words[i], want[i])
		}
	}
}

func TestBuildResultSplitsAtPauses(t *testing.T) {
	words := []speech.Word{
		{Word: "a", Start: 0.1, End: 0.3, Confidence: 1},
		{Word: "b", Start: 0.4, End: 0.6, Confidence: 0.5},
		{Word: "c", Start: 1.1, End: 1.3, Confidence: 0.2}, // 0.5 s pause before
		{Word: "d", Start: 1.7, End: 1.7, Confidence: 0.4}, // 0.4 s pause, zero length
	}
	res := buildResult(words, 2000)
	if len(res.Segments) != 2 {
		t.Fatalf("got %d segments, want 2: %+v", len(res.Segments), res.Segments)
	}
	first, second := res.Segments[0], res.Segments[1]
	if first.Text != "a b" || first.Start != 0.1 || first.End != 0.6 || first.Confidence != 0.75 {
		t.Errorf("first segment = %+v", first)
	}
	if second.Text != "c d" || second.Start != 1.1 || second.End != 1.7 || len(second.Words) != 2 {
		t.Errorf("second segment = %+v", second)
	}
	if res.Text != "a b c d" {
		t.Errorf("Text = %q", res.Text)
	}
	if res.Confidence != 0.525 {
		t.Errorf("Confidence = %v, want 0.525", res.Confidence)
	}
	if res.Language != "en" || res.DurationMs != 2000 {
		t.Errorf("Language, DurationMs = %q, %d", res.Language, res.DurationMs)
	}
}

func TestBuildResultSplitsLongSegments(t *testing.T) {
	var words []speech.Word
	// 40 s of words with 0.3 s pauses, and one of 0.4 s at 20 s.
	for s := 0.0; s < 40; s += 0.5 {
		start := s
		if s >= 20 {
			start += 0.1
		}
		words = append(words, speech.Word{Word: "w", Start: start, End: start + 0.2, Confidence: 1})
	}
	res := buildResult(words, 41000)
	for _, seg := range res.Segments {
		if seg.End-seg.Start > maxSegmentSeconds {
			t.Errorf("segment %.2f-%.2f longer than %d s", seg.Start, seg.End, maxSegmentSeconds)
		}
	}
	if len(res.Segments) != 4 {
		t.Fatalf("got %d segments, want 4", len(res.Segments))
	}
	if res.Segments[1].End != 19.7 || res.Segments[2].Start != 20.1 {
		t.Errorf("split around 20 s at %.2f / %.2f, want 19.7 / 20.1",
			res.Segments[1].End, res.Segments[2].Start)
	}
}

func TestBuildResultNoWords(t *testing.T) {
	res := buildResult(nil, 5000)
	if len(res.Segments) != 0 || res.Text != "" || res.Confidence != 0 {
		t.Errorf("result = %+v, want empty", res)
	}
}
