package api_test

import (
	"encoding/json"
	"testing"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/model"
)

// The stored segments go out as they are, and words joins the words of
// every segment in order.
func TestTranscriptionJSONSegmentsAndWords(t *testing.T) {
	ptr := func(s string) *string { return &s }
	cases := []struct {
		name, stored    string
		segments, words string
		wordsPresent    bool
	}{
		{"two segments",
			`[{"start":0,"end":1,"text":"a b","words":[{"word":"a"},{"word":"b"}]},{"start":2,"end":3,"text":"c","words":[{"word":"c"}]}]`,
			`[{"start":0,"end":1,"text":"a b","words":[{"word":"a"},{"word":"b"}]},{"start":2,"end":3,"text":"c","words":[{"word":"c"}]}]`,
			`[{"word":"a"},{"word":"b"},{"word":"c"}]`, true},
		{"no words", `[{"start":0,"end":1,"text":""}]`, `[{"start":0,"end":1,"text":""}]`, "", false},
		{"empty", `[]`, `[]`, "", false},
		{"not an array", `{"x":1}`, `null`, "", false},
	}
	for _, c := range cases {
		out := api.TranscriptionJSON(&model.Transcription{Segments: ptr(c.stored)})
		raw, err := json.Marshal(out)
		if err != nil {
			t.Fatalf("%s: marshal: %v", c.name, err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if string(got["segments"]) != c.segments {
			t.Errorf("%s: segments %s, want %s", c.name, got["segments"], c.segments)
		}
		words, ok := got["words"]
		if ok != c.wordsPresent || (ok && string(words) != c.words) {
			t.Errorf("%s: words %s (present %v), want %s (present %v)", c.name, words, ok, c.words, c.wordsPresent)
		}
	}
}

// BenchmarkTranscriptionJSON renders and encodes the transcript of about
// an hour of speech (600 segments of 20 words), reporting the allocations
// (B/op) against the encoded size.
func BenchmarkTranscriptionJSON(b *testing.B) {
	type word struct {
		Word       string  `json:"word"`
		Start      float64 `json:"start"`
		End        float64 `json:"end"`
		Confidence float64 `json:"confidence"`
	}
	type segment struct {
		Start float64 `json:"start"`
		End   float64 `json:"end"`
		Text  string  `json:"text"`
		Words []word  `json:"words"`
	}
	segs := make([]segment, 600)
	for i := range segs {
		for j := range 20 {
			at := float64(i*6) + float64(j)*0.3
			segs[i].Words = append(segs[i].Words, word{"word", at, at + 0.25, 0.9})
		}
		segs[i].Start, segs[i].End, segs[i].Text = float64(i*6), float64(i*6)+6, "twenty words of text"
	}

	raw, err := json.Marshal(segs)
	if err != nil {
		b.Fatal(err)
	}
	stored := string(raw)
	tr := &model.Transcription{Segments: &stored}

	var size int
	b.ReportAllocs()
	for b.Loop() {
		out, err := json.Marshal(api.TranscriptionJSON(tr))
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
	}
	b.ReportMetric(float64(size)/1e6, "response-MB")
}
