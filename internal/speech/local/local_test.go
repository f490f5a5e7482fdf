package local_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/speech"
	"github.com/botaserver/bota/internal/speech/local"
	"github.com/botaserver/bota/internal/speech/speechtest"
)

func requireTools(t testing.TB) []speechtest.Clip {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe", "pocketsphinx_continuous"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not on PATH (install Debian packages ffmpeg, pocketsphinx, "+
				"pocketsphinx-en-us): %v", tool, err)
		}
	}
	clips, err := speechtest.LibriVox()
	if err != nil {
		t.Fatal(err)
	}
	return clips
}

func ffmpeg(t testing.TB, args ...string) {
	t.Helper()
	full := append([]string{"-nostdin", "-v", "error", "-y"}, args...)
	if out, err := exec.Command("ffmpeg", full...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
}

// longAudio writes the five clips twice in a row with 1 s of silence
// between them (about 59 s) as Opus, so the engine must cut it.
func longAudio(t testing.TB, clips []speechtest.Clip) (path string, seconds float64) {
	t.Helper()
	dir := t.TempDir()
	var args []string
	var filter strings.Builder
	n := 0
	for range 2 {
		for _, c := range clips {
			args = append(args, "-i", c.WAVPath)
			fmt.Fprintf(&filter, "[%d:a]apad=pad_dur=1[p%d];", n, n)
			n++
		}
	}
	for i := range n {
		fmt.Fprintf(&filter, "[p%d]", i)
	}
	fmt.Fprintf(&filter, "concat=n=%d:v=0:a=1[out]", n)

	path = filepath.Join(dir, "long.opus")
	args = append(args, "-filter_complex", filter.String(), "-map", "[out]",
		"-c:a", "libopus", "-b:a", "32k", path)
	ffmpeg(t, args...)

	for range 2 {
		for _, c := range clips {
			st, err := os.Stat(c.WAVPath)
			if err != nil {
				t.Fatal(err)
			}
			// 44-byte header, 16-bit samples at 16 kHz.
			seconds += float64(st.Size()-44)/32000 + 1
		}
	}
	return path, seconds
}

func toOpus(t testing.TB, wav, dir string) string {
	t.Helper()
	out := filepath.Join(dir, strings.TrimSuffix(filepath.Base(wav), ".wav")+".opus")
	ffmpeg(t, "-i", wav, "-c:a", "libopus", "-b:a", "32k", out)
	return out
}

// byHand runs pocketsphinx the way its documentation shows and returns
// the hypothesis lines joined.
func byHand(t testing.TB, wav string) string {
	t.Helper()
	out, err := exec.Command("pocketsphinx_continuous", "-infile", wav,
		"-time", "yes", "-logfn", "/dev/null").Output()
	if err != nil {
		t.Fatalf("pocketsphinx_continuous %s: %v", wav, err)
	}
	var hyp []string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 4 {
			if _, err := strconv.ParseFloat(fields[3], 64); err == nil {
				continue
			}
		}
		hyp = append(hyp, line)
	}
	return strings.Join(hyp, " ")
}

func TestTranscribeAccuracyOnOpus(t *testing.T) {
	clips := requireTools(t)
	dir := t.TempDir()
	engine := local.New(local.Config{})
	refs := map[string]string{}
	handHyps := map[string]string{}
	engineHyps := map[string]string{}
	for _, c := range clips {
		refs[c.ID] = c.Reference
		handHyps[c.ID] = byHand(t, c.WAVPath)
		res, err := engine.Transcribe(context.Background(),
			speech.Request{Path: toOpus(t, c.WAVPath, dir), Language: "en"})
		if err != nil {
			t.Fatalf("Transcribe %s: %v", c.ID, err)
		}
		engineHyps[c.ID] = res.Text
		checkResult(t, res)
	}

	handErrs, words := speechtest.WER(refs, handHyps)
	engineErrs, _ := speechtest.WER(refs, engineHyps)
	handWER := 100 * float64(handErrs) / float64(words)
	engineWER := 100 * float64(engineErrs) / float64(words)
	t.Logf("WER by hand on WAV: %.1f%% (%d/%d); engine on Opus 32k: %.1f%% (%d/%d)",
		handWER, handErrs, words, engineWER, engineErrs, words)
	if engineWER > handWER+2 {
		t.Errorf("engine WER %.1f%% exceeds pocketsphinx by hand %.1f%% by more than 2 points",
			engineWER, handWER)
	}
	if _, err := exec.LookPath("sctk"); err == nil {
		sclite := scliteWER(t, refs, engineHyps)
		if math.Abs(sclite-engineWER) > 0.1 {
			t.Errorf("sclite WER %.1f%%, own scorer %.1f%%", sclite, engineWER)
		}
	}
}

// scliteWER scores hyps with NIST sclite (Debian package sctk) and returns
// the error rate in percent.
func scliteWER(t *testing.T, refs, hyps map[string]string) float64 {
	t.Helper()
	dir := t.TempDir()
	var ref, hyp strings.Builder
	for id, text := range refs {
		fmt.Fprintf(&ref, "%s (%s)\n", strings.Join(speechtest.Normalize(text), " "), id)
		fmt.Fprintf(&hyp, "%s (%s)\n", strings.Join(speechtest.Normalize(hyps[id]), " "), id)
	}

	refPath, hypPath := filepath.Join(dir, "ref.trn"), filepath.Join(dir, "hyp.trn")
	if err := os.WriteFile(refPath, []byte(ref.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hypPath, []byte(hyp.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command("sctk", "sclite", "-r", refPath, "trn", "-h", hypPath, "trn",
		"-i", "rm", "-o", "sum", "stdout").Output()
	if err != nil {
		t.Fatalf("sctk sclite: %v\n%s", err, out)
	}
	// The summary line reads "| Sum/Avg | sents words | corr sub del ins err s.err |".
	m := regexp.MustCompile(`Sum/Avg\s*\|\s*\d+\s+\d+\s*\|\s*[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)`).
		FindSubmatch(out)
	if m == nil {
		t.Fatalf("no Sum/Avg line in sclite output:\n%s", out)
	}
	wer, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return wer
}

// checkResult asserts the invariants every transcript must hold.
func checkResult(t *testing.T, res *speech.Result) {
	t.Helper()
	if res.Language != "en" {
		t.Errorf("Language = %q, want en", res.Language)
	}
	if res.Confidence <= 0 || res.Confidence > 1 {
		t.Errorf("Confidence = %v, want in (0, 1]", res.Confidence)
	}
	var texts []string
	for i, seg := range res.Segments {
		if seg.End <= seg.Start {
			t.Errorf("segment %d: end %.3f <= start %.3f", i, seg.End, seg.Start)
		}
		if i > 0 && seg.Start < res.Segments[i-1].Start {
			t.Errorf("segment %d starts at %.3f before segment %d", i, seg.Start, i-1)
		}
		if seg.Speaker != "" {
			t.Errorf("segment %d has Speaker %q, want none", i, seg.Speaker)
		}
		if len(seg.Words) == 0 {
			t.Errorf("segment %d has no words", i)
		}
		for _, w := range seg.Words {
			if w.Start < seg.Start || w.End > seg.End || strings.ContainsAny(w.Word, "()<>[]+") {
				t.Errorf("segment %d word %+v outside %.3f-%.3f or not a word", i, w, seg.Start, seg.End)
			}
		}
		if float64(res.DurationMs)/1000 < seg.End {
			t.Errorf("segment %d ends at %.3f after the audio's %d ms", i, seg.End, res.DurationMs)
		}
		texts = append(texts, seg.Text)
	}
	if got := strings.Join(texts, " "); got != res.Text {
		t.Errorf("Text %q is not the segments' text %q", res.Text, got)
	}
}

func TestTranscribeLongAudioInParallel(t *testing.T) {
	clips := requireTools(t)
	path, seconds := longAudio(t, clips)
	engine := local.New(local.Config{Workers: 2})

	res, err := engine.Transcribe(context.Background(), speech.Request{Path: path})
	if err != nil {
		t.Fatalf("Transcribe: %v", err)
	}
	checkResult(t, res)
	if diff := math.Abs(float64(res.DurationMs)/1000 - seconds); diff > 0.05 {
		t.Errorf("DurationMs = %d, want %.3f s", res.DurationMs, seconds)
	}
	last := res.Segments[len(res.Segments)-1]
	if last.End < seconds-5 {
		t.Errorf("last segment ends at %.2f s of %.2f s: later pieces lost or not offset",
			last.End, seconds)
	}
	if engine.Peak() != 2 {
		t.Errorf("Peak = %d, want 2 pieces at once", engine.Peak())
	}
	if engine.Running() != 0 {
		t.Errorf("Running = %d after return, want 0", engine.Running())
	}
	// The second half repeats the first, so each reference sentence should
	// be recognised about as well twice.
	refs := map[string]string{"all": strings.Repeat(joinRefs(clips)+" ", 2)}
	errs, words := speechtest.WER(refs, map[string]string{"all": res.Text})
	t.Logf("long audio %.1f s: %d segments, WER %.1f%% (%d/%d)",
		seconds, len(res.Segments), 100*float64(errs)/float64(words), errs, words)
	if float64(errs)/float64(words) > 0.5 {
		t.Errorf("WER %d/%d over 50%%: pieces misaligned or cut inside words", errs, words)
	}
}

func joinRefs(clips []speechtest.Clip) string {
	var parts []string
	for _, c := range clips {
		parts = append(parts, c.Reference)
	}
	return strings.Join(parts, " ")
}

func TestTranscribeWorkerCap(t *testing.T) {
	clips := requireTools(t)
	engine := local.New(local.Config{Workers: 2})

	// Five calls of one piece each want five recognisers at once.
	var wg sync.WaitGroup
	errs := make(chan error, len(clips))
	for _, c := range clips {
		wg.Go(func() {
			_, err := engine.Transcribe(context.Background(), speech.Request{Path: c.WAVPath})
			errs <- err
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	over := 0
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
			if engine.Running() > 2 {
				over++
			}
		}
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Transcribe: %v", err)
		}
	}
	if over > 0 {
		t.Errorf("Running exceeded 2 in %d samples", over)
	}
	if engine.Peak() != 2 {
		t.Errorf("Peak = %d, want 2", engine.Peak())
	}
}

func TestTranscribeCancelKillsRecogniser(t *testing.T) {
	clips := requireTools(t)
	path, _ := longAudio(t, clips)
	engine := local.New(local.Config{Workers: 2})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := engine.Transcribe(ctx, speech.Request{Path: path})
		errc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for engine.Running() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if engine.Running() == 0 {
		t.Fatal("no recogniser started within 10 s")
	}
	// Running counts a recogniser just before its process starts, so look
	// for the process until it appears.
	children := recogniserChildren(t)
	for len(children) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		children = recogniserChildren(t)
	}
	if len(children) == 0 {
		t.Fatal("no pocketsphinx_continuous child process found while Running > 0")
	}

	cancel()
	canceledAt := time.Now()
	var err error
	select {
	case err = <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("Transcribe did not return within 5 s of cancellation")
	}
	t.Logf("returned %v after cancellation", time.Since(canceledAt))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	if se := speech.AsError(err); !se.Retryable {
		t.Errorf("cancellation error %v not retryable", se)
	}
	if engine.Running() != 0 {
		t.Errorf("Running = %d after return, want 0", engine.Running())
	}
	for _, pid := range children {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
			state, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			t.Errorf("recogniser %d still exists: %s", pid, state)
		}
	}
}

// recogniserChildren returns the pids of this process's pocketsphinx children.
func recogniserChildren(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the ")" closing the command name: state, ppid, ...
		closing := bytes.LastIndexByte(stat, ')')
		fields := strings.Fields(string(stat[closing+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) &&
			bytes.Contains(stat, []byte("(pocketsphinx_co")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestTranscribeRejectsBadAudio(t *testing.T) {
	clips := requireTools(t)
	dir := t.TempDir()
	short := filepath.Join(dir, "short.opus")
	ffmpeg(t, "-t", "0.6", "-i", clips[0].WAVPath, "-c:a", "libopus", short)
	text := filepath.Join(dir, "notes.opus")
	if err := os.WriteFile(text, []byte("this is not audio\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opus := toOpus(t, clips[0].WAVPath, dir)
	data, err := os.ReadFile(opus)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.opus")
	if err := os.WriteFile(truncated, data[:3000], 0o600); err != nil {
		t.Fatal(err)
	}

	engine := local.New(local.Config{})
	cases := []struct {
		name, path, lang, code string
	}{
		{"under one second", short, "", speech.CodeAudioTooShort},
		{"text file", text, "", speech.CodeUnsupportedFormat},
		{"truncated ogg", truncated, "", speech.CodeAudioCorrupt},
		{"german", opus, "de-DE", speech.CodeProcessingError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := engine.Transcribe(context.Background(),
				speech.Request{Path: tc.path, Language: tc.lang})
			var se *speech.Error
			if !errors.As(err, &se) {
				t.Fatalf("error = %v, want *speech.Error", err)
			}
			if se.Code != tc.code {
				t.Errorf("Code = %q, want %q (%v)", se.Code, tc.code, se)
			}
			if se.Retryable {
				t.Errorf("error %v is retryable, want not", se)
			}
		})
	}
	if engine.Peak() != 0 {
		t.Errorf("Peak = %d, want no recogniser run for rejected audio", engine.Peak())
	}
}

func TestTranscribeMissingCommand(t *testing.T) {
	clips := requireTools(t)
	engine := local.New(local.Config{Command: "no-such-recogniser"})
	_, err := engine.Transcribe(context.Background(), speech.Request{Path: clips[1].WAVPath})
	se := speech.AsError(err)
	if se.Code != speech.CodeProcessingError || se.Retryable {
		t.Errorf("error = %+v, want non-retryable processing_error", se)
	}
	if !strings.Contains(se.Message, "no-such-recogniser") {
		t.Errorf("message %q does not name the command", se.Message)
	}
}

// BenchmarkTranscribe reports the real-time factor (processing time / audio
// time) of the engine on the 59 s long-audio file with two workers.
func BenchmarkTranscribe(b *testing.B) {
	clips := requireTools(b)
	path, seconds := longAudio(b, clips)
	engine := local.New(local.Config{Workers: 2})
	b.ResetTimer()
	for b.Loop() {
		if _, err := engine.Transcribe(context.Background(), speech.Request{Path: path}); err != nil {
			b.Fatal(err)
		}
	}
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(perOp/seconds, "rtf")
	b.Logf("%.1f s of audio in %.2f s: real-time factor %.3f", seconds, perOp, perOp/seconds)
}
