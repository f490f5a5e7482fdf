package speechtest_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/botaserver/bota/internal/speech/speechtest"
)

func TestWERCounts(t *testing.T) {
	cases := []struct {
		name       string
		ref, hyp   string
		wantErrors int
	}{
		{"identical", "he was not an ill disposed young man", "He was not an ill-disposed, young man.", 0},
		{"substitution", "he was not", "he was nut", 1},
		{"deletion", "he was not", "he not", 1},
		{"insertion", "he was not", "he was really not", 1},
		{"empty hypothesis", "he was not", "", 3},
		{"mixed", "a b c d e", "a x c e f g", 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs, words := speechtest.WER(map[string]string{"u": tc.ref}, map[string]string{"u": tc.hyp})
			if errs != tc.wantErrors {
				t.Errorf("errors = %d, want %d", errs, tc.wantErrors)
			}
			if want := len(speechtest.Normalize(tc.ref)); words != want {
				t.Errorf("words = %d, want %d", words, want)
			}
		})
	}
}

func TestWERMissingHypothesis(t *testing.T) {
	errs, words := speechtest.WER(
		map[string]string{"a": "one two", "b": "three four five"},
		map[string]string{"a": "one two", "c": "ignored"})
	if errs != 3 || words != 5 {
		t.Errorf("WER = %d/%d, want 3/5", errs, words)
	}
}

func TestNormalize(t *testing.T) {
	got := speechtest.Normalize("<s> Mister Dashwood's \"cold-hearted\" -- man! </s>")
	want := []string{"mister", "dashwood's", "cold", "hearted", "man"}
	if !slices.Equal(got, want) {
		t.Errorf("Normalize = %q, want %q", got, want)
	}
}

func TestLibriVoxClips(t *testing.T) {
	clips, err := speechtest.LibriVox()
	if err != nil {
		t.Fatal(err)
	}
	if len(clips) != 5 {
		t.Fatalf("got %d clips, want 5", len(clips))
	}
	first := clips[0]
	if first.ID != "sense_and_sensibility_01_austen_64kb-0870" {
		t.Errorf("first ID = %q", first.ID)
	}
	if !strings.HasPrefix(first.Reference, "and mister john dashwood") ||
		strings.Contains(first.Reference, "<s>") {
		t.Errorf("first Reference = %q", first.Reference)
	}
	refs := map[string]string{}
	for _, c := range clips {
		refs[c.ID] = c.Reference
	}
	if _, words := speechtest.WER(refs, nil); words != 71 {
		t.Errorf("reference words = %d, want 71", words)
	}
}
