package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// LibrivoxDir holds the five 16 kHz mono WAV clips of Debian's
// pocketsphinx-testdata package.
const LibrivoxDir = "/usr/share/pocketsphinx/test/data/librivox"

// LibrivoxClips are the clips' file names.
var LibrivoxClips = []string{
	"sense_and_sensibility_01_austen_64kb-0870.wav",
	"sense_and_sensibility_01_austen_64kb-0880.wav",
	"sense_and_sensibility_01_austen_64kb-0890.wav",
	"sense_and_sensibility_01_austen_64kb-0920.wav",
	"sense_and_sensibility_01_austen_64kb-0930.wav",
}

// roundTrip uploads each LibriVox clip in turn and times upload-complete
// to transcription completed, against pocketsphinx_continuous run by hand
// on the same clip.
func (e *env) roundTrip(ctx context.Context) error {
	if _, err := exec.LookPath("pocketsphinx_continuous"); err != nil {
		return fmt.Errorf("pocketsphinx_continuous not found (Debian packages pocketsphinx, " +
			"pocketsphinx-en-us, pocketsphinx-testdata)")
	}
	opts, err := e.serverOptions(ctx, false)
	if err != nil {
		return err
	}
	srv, err := startBota(ctx, e.cfg.Binary, opts, nil)
	if err != nil {
		return err
	}
	defer srv.stop()
	client := NewClient(4)
	defer client.CloseIdleConnections()
	a := srv.api(client)
	devs, err := a.createDevices(ctx, 1, "roundtrip")
	if err != nil {
		return err
	}
	up := &uploader{api: a, token: devs[0].Token, client: client}

	var audio, botaTotal, handTotal time.Duration
	for _, clip := range LibrivoxClips {
		path := filepath.Join(LibrivoxDir, clip)
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		// 16 kHz, mono, 16-bit: 32,000 bytes a second after the header.
		length := time.Duration(float64(info.Size()-44) / 32000 * float64(time.Second))
		audio += length

		start := time.Now()
		out, err := exec.CommandContext(ctx, "pocketsphinx_continuous", "-infile", path,
			"-logfn", "/dev/null").Output()
		if err != nil {
			return fmt.Errorf("pocketsphinx_continuous %s: %w", clip, err)
		}
		hand := time.Since(start)
		handTotal += hand

		took, text, err := e.transcribe(ctx, up, path, info.Size())
		if err != nil {
			return fmt.Errorf("%s: %w", clip, err)
		}
		botaTotal += took
		e.log.Info("ClipTranscribed", "clip", clip, "audio", length.String(), "bota", took.String(),
			"by_hand", hand.String(), "text", text, "by_hand_text", firstLine(out))
	}

	r := e.report
	r.add(Figure{Benchmark: RoundTrip, Name: "upload-complete to transcript, 5 clips", Unit: "s",
		Value: botaTotal.Seconds(), Baseline: "pocketsphinx_continuous by hand", BaselineValue: handTotal.Seconds()})
	r.add(Figure{Benchmark: RoundTrip, Name: "real-time factor", Unit: "×",
		Value: botaTotal.Seconds() / audio.Seconds(), Baseline: "pocketsphinx_continuous by hand",
		BaselineValue: handTotal.Seconds() / audio.Seconds()})
	r.note("roundtrip: %.1f s of audio in 5 clips, sent one at a time; real-time factor is processing "+
		"time over audio time", audio.Seconds())
	return nil
}

// transcribe uploads one clip and returns the time from upload-complete's
// answer to the recording's transcription being completed.
func (e *env) transcribe(ctx context.Context, up *uploader, path string, size int64) (time.Duration, string, error) {
	sha, err := fileSHA256(path)
	if err != nil {
		return 0, "", err
	}
	recID, _, err := up.flow(ctx, fileOpener(path), size, sha)
	if err != nil {
		return 0, "", err
	}
	// flow returned when upload-complete answered.
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		var rec struct {
			Status          string  `json:"status"`
			TranscriptionID *string `json:"transcription_id"`
		}
		if err := up.api.call(ctx, http.MethodGet, "/v1/recordings/"+recID, "", nil, &rec); err != nil {
			return 0, "", err
		}
		if rec.TranscriptionID != nil {
			var tr struct {
				Status string  `json:"status"`
				Text   *string `json:"text"`
			}
			if err := up.api.call(ctx, http.MethodGet, "/v1/transcriptions/"+*rec.TranscriptionID, "", nil,
				&tr); err != nil {
				return 0, "", err
			}
			switch tr.Status {
			case "completed":
				text := ""
				if tr.Text != nil {
					text = *tr.Text
				}
				return time.Since(start), text, nil
			case "failed":
				return 0, "", fmt.Errorf("transcription %s failed", *rec.TranscriptionID)
			}
		}
		select {
		case <-ctx.Done():
			return 0, "", fmt.Errorf("recording %s: no completed transcription after 2 minutes", recID)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return hashReader(f)
}
