package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/botaserver/bota/internal/audio"
	"github.com/botaserver/bota/internal/speech"
)

// runRecogniser runs the recogniser on a headerless 16 kHz mono s16le file
// and returns its standard output. Cancelling ctx kills the process.
func (e *Engine) runRecogniser(ctx context.Context, rawPath string) ([]byte, error) {
	args := []string{"-infile", rawPath, "-time", "yes", "-logfn", "/dev/null",
		"-input_endian", "little", "-samprate", strconv.Itoa(audio.SampleRate)}
	args = append(args, e.args...)
	cmd := exec.CommandContext(ctx, e.command, args...)
	// After the kill on cancellation, stop waiting for output pipes that a
	// stray grandchild might hold open.
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr

	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, canceled(ctx)
	}
	if errors.Is(err, exec.ErrNotFound) {
		return nil, &speech.Error{Code: speech.CodeProcessingError,
			Message: fmt.Sprintf("recogniser %q not found; install Debian packages "+
				"pocketsphinx and pocketsphinx-en-us", e.command), Err: err}
	}
	if err != nil {
		return nil, &speech.Error{Code: speech.CodeProcessingError,
			Message:   "the recogniser failed: " + lastLine(stderr.String()),
			Retryable: true, Err: err}
	}
	return stdout.Bytes(), nil
}

// parseOutput reads pocketsphinx_continuous -time yes output. Each utterance
// is a hypothesis line followed by one "word start end confidence" line per
// token, times in seconds. Fillers are dropped and alternate pronunciations
// ("was(2)") become the plain word.
func parseOutput(out []byte) ([]speech.Word, error) {
	var words []speech.Word
	scanner := bufio.NewScanner(bytes.NewReader(out))
	scanner.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) != 4 {
			continue // a hypothesis line
		}
		start, err1 := strconv.ParseFloat(fields[1], 64)
		end, err2 := strconv.ParseFloat(fields[2], 64)
		conf, err3 := strconv.ParseFloat(fields[3], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue // a four-word hypothesis line
		}
		token := fields[0]
		if isFiller(token) {
			continue
		}
		if i := strings.IndexByte(token, '('); i > 0 && strings.HasSuffix(token, ")") {
			token = token[:i]
		}
		words = append(words, speech.Word{
			Word:       token,
			Start:      start,
			End:        end,
			Confidence: min(max(conf, 0), 1),
		})
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("scan recogniser output: %w", err)
	}
	return words, nil
}

// isFiller reports tokens that are not words: sentence and silence markers
// (<s>, </s>, <sil>), noise classes ([SPEECH], [NOISE]) and ++NOISE++ fillers.
func isFiller(token string) bool {
	return strings.HasPrefix(token, "<") || strings.HasPrefix(token, "[") ||
		strings.HasPrefix(token, "++")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
