// Package speechtest scores transcripts and locates the reference speech
// clips that engine and pipeline tests share.
package speechtest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// LibriVoxDir is where Debian's pocketsphinx-testdata package installs five
// LibriVox clips (16 kHz mono WAV) and their reference transcription.
const LibriVoxDir = "/usr/share/pocketsphinx/test/data/librivox"

// Clip is one reference recording.
type Clip struct {
	ID        string
	WAVPath   string
	Reference string
}

// LibriVox returns the clips listed in LibriVoxDir's transcription file,
// whose lines read "<s> words </s> (id)". The WAV of each is id + ".wav".
func LibriVox() ([]Clip, error) {
	path := filepath.Join(LibriVoxDir, "transcription")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open LibriVox references (install Debian package "+
			"pocketsphinx-testdata): %w", err)
	}
	defer f.Close()

	var clips []Clip
	scanner := bufio.NewScanner(f)
	for line := 1; scanner.Scan(); line++ {
		text := strings.TrimSpace(scanner.Text())
		if text == "" {
			continue
		}
		open := strings.LastIndexByte(text, '(')
		if open < 0 || !strings.HasSuffix(text, ")") {
			return nil, fmt.Errorf("%s:%d: missing \"(id)\" at the end of %q", path, line, text)
		}
		id := text[open+1 : len(text)-1]
		var refWords []string
		for _, w := range strings.Fields(text[:open]) {
			if w != "<s>" && w != "</s>" {
				refWords = append(refWords, w)
			}
		}
		wav := filepath.Join(LibriVoxDir, id+".wav")
		if _, err := os.Stat(wav); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		clips = append(clips, Clip{ID: id, WAVPath: wav, Reference: strings.Join(refWords, " ")})
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(clips) == 0 {
		return nil, fmt.Errorf("%s lists no clips", path)
	}
	return clips, nil
}

// WER returns the word errors (substitutions, deletions and insertions of
// a minimum edit alignment) summed over every reference, and the number of
// reference words. A reference without a hypothesis counts all its words as
// deleted; hypotheses without a reference are ignored. The word error rate
// is errors / words.
func WER(refs, hyps map[string]string) (errors, words int) {
	for id, ref := range refs {
		r := Normalize(ref)
		h := Normalize(hyps[id])
		errors += editDistance(r, h)
		words += len(r)
	}
	return errors, words
}

// Normalize lowercases text, drops sentence markers (<s>, </s>) and
// punctuation except apostrophes inside words, and splits it into words.
func Normalize(text string) []string {
	var words []string
	for _, field := range strings.Fields(strings.ToLower(text)) {
		if field == "<s>" || field == "</s>" {
			continue
		}
		cleaned := strings.Map(func(r rune) rune {
			if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\'' {
				return r
			}
			if r == '-' {
				return ' '
			}
			return -1
		}, field)
		for _, w := range strings.Fields(cleaned) {
			w = strings.Trim(w, "'")
			if w != "" {
				words = append(words, w)
			}
		}
	}
	return words
}

// editDistance is the Levenshtein distance between two word sequences.
func editDistance(ref, hyp []string) int {
	prev := make([]int, len(hyp)+1)
	cur := make([]int, len(hyp)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ref); i++ {
		cur[0] = i
		for j := 1; j <= len(hyp); j++ {
			cost := 1
			if ref[i-1] == hyp[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(hyp)]
}
