package local

import (
	"math"
	"strings"

	"github.com/botaserver/bota/internal/speech"
)

const (
	// pauseSeconds is the silence between two words that starts a new segment.
	pauseSeconds = 0.5
	// maxSegmentSeconds is the length above which a segment is split again
	// at its longest pause between words.
	maxSegmentSeconds = 15
)

// buildResult groups time-ordered words into segments and fills the result.
func buildResult(words []speech.Word, durationMs int64) *speech.Result {
	res := &speech.Result{Language: "en", DurationMs: durationMs, Segments: []speech.Segment{}}
	var groups [][]speech.Word
	start := 0
	for i := 1; i <= len(words); i++ {
		if i == len(words) || words[i].Start-words[i-1].End >= pauseSeconds {
			groups = append(groups, splitLong(words[start:i])...)
			start = i
		}
	}

	var texts []string
	var confSum float64
	for _, g := range groups {
		seg := makeSegment(g)
		res.Segments = append(res.Segments, seg)
		texts = append(texts, seg.Text)
		for _, w := range g {
			confSum += w.Confidence
		}
	}
	res.Text = strings.Join(texts, " ")
	if len(words) > 0 {
		res.Confidence = roundMs(confSum / float64(len(words)))
	}
	return res
}

// splitLong splits a run of words longer than maxSegmentSeconds at its
// longest pause in the middle third, recursively, so the parts stay
// balanced when all pauses are alike.
func splitLong(words []speech.Word) [][]speech.Word {
	first, last := words[0].Start, words[len(words)-1].End
	if len(words) < 2 || last-first <= maxSegmentSeconds {
		return [][]speech.Word{words}
	}
	lo, hi := first+(last-first)/3, first+(last-first)*2/3
	cut, longest := len(words)/2, math.Inf(-1)
	for i := 1; i < len(words); i++ {
		if words[i].Start < lo || words[i].Start > hi {
			continue
		}
		if gap := words[i].Start - words[i-1].End; gap > longest {
			cut, longest = i, gap
		}
	}
	return append(splitLong(words[:cut]), splitLong(words[cut:])...)
}

func makeSegment(words []speech.Word) speech.Segment {
	seg := speech.Segment{Start: words[0].Start, End: words[len(words)-1].End}
	// Segments must have end > start even for a single zero-length token.
	if seg.End <= seg.Start {
		seg.End = roundMs(seg.Start + 0.01)
	}
	texts := make([]string, len(words))
	var conf float64
	for i, w := range words {
		texts[i] = w.Word
		conf += w.Confidence
	}
	seg.Text = strings.Join(texts, " ")
	seg.Confidence = roundMs(conf / float64(len(words)))
	seg.Words = append([]speech.Word(nil), words...)
	return seg
}

// roundMs rounds to three decimals, removing float noise from offsets.
func roundMs(v float64) float64 { return math.Round(v*1000) / 1000 }
