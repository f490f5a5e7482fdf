package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// TusdInstall is the command that installs the tusd baseline.
const TusdInstall = "go install github.com/tus/tusd/v2/cmd/tusd@v2.9.1"

const mib = 1 << 20

// uploadWorkers is how many files are in flight at once in the many-files
// benchmarks, for bota and both baselines.
const uploadWorkers = 8

// writeWAV writes a WAV file of exactly size bytes: a 16 kHz mono 16-bit
// header and pseudo-random samples (noise, which no codec shrinks). It
// returns the file's SHA-256.
func writeWAV(path string, size int64) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	if _, err := w.Write(wavHeader(size)); err != nil {
		return "", err
	}
	rng := mathrand.NewChaCha8([32]byte{1})
	buf := make([]byte, mib)
	for left := size - 44; left > 0; {
		n := min(left, int64(len(buf)))
		_, _ = rng.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return "", err
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// wavHeader returns the 44-byte header of a 16 kHz mono PCM WAV file of
// size bytes in all.
func wavHeader(size int64) []byte {
	le := binary.LittleEndian
	b := make([]byte, 0, 44)
	b = append(b, "RIFF"...)
	b = le.AppendUint32(b, uint32(size-8))
	b = append(b, "WAVEfmt "...)
	b = le.AppendUint32(b, 16)    // format chunk size
	b = le.AppendUint16(b, 1)     // PCM
	b = le.AppendUint16(b, 1)     // channels
	b = le.AppendUint32(b, 16000) // sample rate
	b = le.AppendUint32(b, 32000) // bytes per second
	b = le.AppendUint16(b, 2)     // bytes per frame
	b = le.AppendUint16(b, 16)    // bits per sample
	b = append(b, "data"...)
	b = le.AppendUint32(b, uint32(size-44))
	return b
}

// uploader sends files to bota through the signed-URL flow as one device.
type uploader struct {
	api    *apiClient
	token  string
	client *http.Client
}

// uploadTarget is a created recording and its signed upload URL.
type uploadTarget struct {
	recordingID string
	url         string
	method      string
	headers     map[string]string
}

// prepare creates a recording and requests its upload URL.
func (u *uploader) prepare(ctx context.Context, size int64) (uploadTarget, error) {
	var rec struct {
		ID string `json:"id"`
	}
	if err := u.api.call(ctx, http.MethodPost, "/v1/recordings", u.token,
		map[string]any{"name": "bench.wav"}, &rec); err != nil {
		return uploadTarget{}, err
	}
	var target struct {
		UploadURL string            `json:"upload_url"`
		Method    string            `json:"method"`
		Headers   map[string]string `json:"headers"`
	}
	err := u.api.call(ctx, http.MethodPost, "/v1/recordings/"+rec.ID+"/upload-url", u.token,
		map[string]any{"type": "audio", "content_type": "audio/wav", "file_size_bytes": size}, &target)
	if err != nil {
		return uploadTarget{}, err
	}
	if target.Method == "" {
		target.Method = http.MethodPut
	}
	return uploadTarget{recordingID: rec.ID, url: target.UploadURL, method: target.Method,
		headers: target.Headers}, nil
}

// put streams size bytes from body to the signed URL.
func (u *uploader) put(ctx context.Context, t uploadTarget, body io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, t.method, t.url, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	for k, v := range t.headers {
		if http.CanonicalHeaderKey(k) != "Content-Length" {
			req.Header.Set(k, v)
		}
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return fmt.Errorf("PUT upload URL: %w", err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("PUT upload URL: HTTP %d: %s", resp.StatusCode, truncate(raw, 300))
	}
	return nil
}

func (u *uploader) complete(ctx context.Context, t uploadTarget, size int64, sha string) error {
	return u.api.call(ctx, http.MethodPost, "/v1/recordings/"+t.recordingID+"/upload-complete", u.token,
		map[string]any{"content_sha256": sha, "file_size_bytes": size}, nil)
}

// flow runs create, upload-url, PUT and upload-complete for one file and
// returns the recording's id and how long the PUT took.
func (u *uploader) flow(ctx context.Context, open func() (io.ReadCloser, error), size int64,
	sha string) (string, time.Duration, error) {
	t, err := u.prepare(ctx, size)
	if err != nil {
		return "", 0, err
	}
	body, err := open()
	if err != nil {
		return "", 0, err
	}
	defer body.Close()
	start := time.Now()
	if err := u.put(ctx, t, body, size); err != nil {
		return "", 0, err
	}
	putTime := time.Since(start)
	return t.recordingID, putTime, u.complete(ctx, t, size, sha)
}

func hashReader(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// uploads measures one big file and many 1 MiB files through bota's
// signed-URL flow on local disk, against dd and tusd writing the same
// bytes to the same disk, and bota's peak memory above idle.
func (e *env) uploads(ctx context.Context) error {
	bigSize := int64(e.size(1024, 128)) * mib
	files := e.size(1000, 100)

	filesDir, err := e.subdir("files")
	if err != nil {
		return err
	}
	defer os.RemoveAll(filesDir)
	bigPath := filepath.Join(filesDir, "big.wav")
	bigSHA, err := writeWAV(bigPath, bigSize)
	if err != nil {
		return fmt.Errorf("write test file: %w", err)
	}
	smallPath := filepath.Join(filesDir, "small.wav")
	smallSHA, err := writeWAV(smallPath, mib)
	if err != nil {
		return fmt.Errorf("write test file: %w", err)
	}
	small, err := os.ReadFile(smallPath)
	if err != nil {
		return err
	}

	client := NewClient(uploadWorkers * 2)
	defer client.CloseIdleConnections()
	srv, up, err := e.startUploader(ctx, client)
	if err != nil {
		return err
	}
	defer srv.stop()
	// The second server leaves media files to the kernel's writeback, as
	// tusd does, so that the two compare on equal terms.
	noSyncSrv, noSync, err := e.startUploader(ctx, client, "--disk-sync=false")
	if err != nil {
		return err
	}
	defer noSyncSrv.stop()
	c := contenders{bota: up, noSync: noSync}

	tusd, tusdFiles, err := startTusd(ctx, e)
	if err != nil {
		return err
	}
	defer tusd.stop()
	c.tusd, c.tusdFiles = tusd, tusdFiles

	bigLabel := fmt.Sprintf("one %d MiB file", bigSize/mib)
	if err := e.uploadBig(ctx, srv, c, bigLabel, bigPath, bigSize, bigSHA); err != nil {
		return err
	}
	manyLabel := fmt.Sprintf("%d files of 1 MiB", files)
	if err := e.uploadMany(ctx, srv, c, manyLabel, small, smallPath, smallSHA, files); err != nil {
		return err
	}
	e.report.note("uploads: bota fsyncs each file before answering, as dd conv=fsync does; tusd v2.9.1 "+
		"(file store) does not fsync, nor does bota with --disk-sync=false; upload-complete runs ffprobe on each WAV file and takes its "+
		"duration from the header; %d files in flight in the many-files runs; PUT, dd and tusd figures are medians of %d "+
		"rounds (%d for the many files) that alternate bota and its baselines, each removing its files after it is timed",
		uploadWorkers, bigRounds, manyRounds)
	return nil
}

// contenders are the uploaders the upload benchmarks time in turn.
type contenders struct {
	// bota fsyncs each file, noSync runs with --disk-sync=false.
	bota, noSync *uploader
	tusd         *process
	// tusdFiles is the folder tusd stores uploads in.
	tusdFiles string
}

// Each contender removes what it wrote once it is timed. On the virtual
// machine of docs/benchmarks.md, writing into the page cache ran at 0.2 to
// 3 GiB/s for the same program, fast right after a removal had freed
// pages. With every contender removing its files, each one starts after
// such a removal, whatever the order.

// clearTusd removes the uploads tusd has stored.
func (c contenders) clearTusd() error {
	entries, err := os.ReadDir(c.tusdFiles)
	if err != nil {
		return err
	}
	for _, entry := range entries {
		if err := os.RemoveAll(filepath.Join(c.tusdFiles, entry.Name())); err != nil {
			return err
		}
	}
	return nil
}

// remove deletes recordings through the API, which removes their files.
func (u *uploader) remove(ctx context.Context, ids ...string) error {
	_, err := parallel(ctx, len(ids), func(i int) error {
		return u.api.call(ctx, http.MethodDelete, "/v1/recordings/"+ids[i], "", nil, nil)
	})
	return err
}

// startUploader starts a bota server on SQLite with flags, turns off its
// automatic transcription and returns an uploader for one of its devices.
func (e *env) startUploader(ctx context.Context, client *http.Client, flags ...string) (*botaServer, *uploader, error) {
	opts, err := e.serverOptions(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	opts.Extra = flags
	srv, err := startBota(ctx, e.cfg.Binary, opts, nil)
	if err != nil {
		return nil, nil, err
	}
	a := srv.api(client)
	if err := a.setAutoTranscription(ctx, srv.ID, false); err != nil {
		srv.stop()
		return nil, nil, err
	}
	devs, err := a.createDevices(ctx, 1, "upload")
	if err != nil {
		srv.stop()
		return nil, nil, err
	}
	return srv, &uploader{api: a, token: devs[0].Token, client: client}, nil
}

// bigRounds and manyRounds are how many times the upload benchmarks run
// bota and its baselines in turn, reporting the medians. On the 2-core
// virtual machine of docs/benchmarks.md, dd alone wrote 1 GiB at 486 to
// 2,242 MiB/s in three rounds a few seconds apart, so one run of each
// compares little. A round of the big file takes seconds and one of the
// many files over a minute.
const (
	bigRounds  = 5
	manyRounds = 3
)

func (e *env) uploadBig(ctx context.Context, srv *botaServer, c contenders, label, path string,
	size int64, sha string) error {
	ddDir, err := e.subdir("dd")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ddDir)
	idle, err := settleRSS(srv)
	if err != nil {
		return err
	}

	var dd, tus, put, full, noSync []float64
	for round := range bigRounds {
		err := inTurn(round,
			func() error {
				flush()
				target := filepath.Join(ddDir, "big")
				start := time.Now()
				if err := runDD(ctx, path, target); err != nil {
					return err
				}
				dd = append(dd, rate(size, time.Since(start)))
				return os.Remove(target)
			},
			func() error {
				flush()
				start := time.Now()
				if err := tusUpload(ctx, c.bota.client, c.tusd.URL(), fileOpener(path), size); err != nil {
					return fmt.Errorf("tusd: %w", err)
				}
				tus = append(tus, rate(size, time.Since(start)))
				return c.clearTusd()
			},
			func() error {
				flush()
				start := time.Now()
				id, putTime, err := c.bota.flow(ctx, fileOpener(path), size, sha)
				if err != nil {
					return fmt.Errorf("bota: %w", err)
				}
				full = append(full, rate(size, time.Since(start)))
				put = append(put, rate(size, putTime))
				return c.bota.remove(ctx, id)
			},
			func() error {
				flush()
				id, putTime, err := c.noSync.flow(ctx, fileOpener(path), size, sha)
				if err != nil {
					return fmt.Errorf("bota --disk-sync=false: %w", err)
				}
				noSync = append(noSync, rate(size, putTime))
				return c.noSync.remove(ctx, id)
			})
		if err != nil {
			return err
		}
		e.log.Info("UploadRound", "label", label, "round", round+1, "dd", dd[round], "tusd", tus[round],
			"put", put[round], "put_no_sync", noSync[round])
	}
	_, peak, err := srv.memory()
	if err != nil {
		return err
	}
	e.addUploadFigures(label, uploadRates{put: median(put), full: median(full), noSync: median(noSync),
		dd: median(dd), tusd: median(tus)}, float64(peak-idle)/1024, true)
	return nil
}

func (e *env) uploadMany(ctx context.Context, srv *botaServer, c contenders, label string,
	data []byte, path, sha string, files int) error {
	size := int64(len(data))
	total := size * int64(files)
	memOpener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	idle, err := settleRSS(srv)
	if err != nil {
		return err
	}

	// putRound times the PUTs of one bota server, adds the rate to rates
	// and removes the recordings.
	putRound := func(up *uploader, name string, rates *[]float64) func() error {
		return func() error {
			took, ids, err := up.putMany(ctx, data, sha, files)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			*rates = append(*rates, rate(total, took))
			return up.remove(ctx, ids...)
		}
	}

	var dd, tus, put, noSync []float64
	for round := range manyRounds {
		err := inTurn(round,
			func() error {
				ddDir, err := e.subdir("dd")
				if err != nil {
					return err
				}
				flush()
				took, err := parallel(ctx, files, func(i int) error {
					return runDD(ctx, path, filepath.Join(ddDir, strconv.Itoa(i)))
				})
				if err != nil {
					return err
				}
				dd = append(dd, rate(total, took))
				return os.RemoveAll(ddDir)
			},
			func() error {
				flush()
				took, err := parallel(ctx, files, func(int) error {
					return tusUpload(ctx, c.bota.client, c.tusd.URL(), memOpener, size)
				})
				if err != nil {
					return fmt.Errorf("tusd: %w", err)
				}
				tus = append(tus, rate(total, took))
				return c.clearTusd()
			},
			putRound(c.bota, "bota", &put),
			putRound(c.noSync, "bota --disk-sync=false", &noSync))
		if err != nil {
			return err
		}
		e.log.Info("UploadRound", "label", label, "round", round+1, "dd", dd[round], "tusd", tus[round],
			"put", put[round], "put_no_sync", noSync[round])
	}

	// The full flow runs once: it is far slower than the disk, so the
	// disk's moves hardly show in it.
	flush()
	took, err := parallel(ctx, files, func(int) error {
		_, _, err := c.bota.flow(ctx, memOpener, size, sha)
		return err
	})
	if err != nil {
		return fmt.Errorf("bota: %w", err)
	}
	fullRate := rate(total, took)
	_, peak, err := srv.memory()
	if err != nil {
		return err
	}
	e.addUploadFigures(label, uploadRates{put: median(put), full: fullRate, noSync: median(noSync),
		dd: median(dd), tusd: median(tus)}, float64(peak-idle)/1024, false)
	return nil
}

// putMany times the PUTs of files copies of data through bota and returns
// the recordings' ids. The recordings and upload URLs are made first and
// the uploads completed after, both untimed.
func (up *uploader) putMany(ctx context.Context, data []byte, sha string, files int) (time.Duration, []string, error) {
	size := int64(len(data))
	targets := make([]uploadTarget, files)
	if _, err := parallel(ctx, files, func(i int) error {
		var err error
		targets[i], err = up.prepare(ctx, size)
		return err
	}); err != nil {
		return 0, nil, err
	}
	flush()
	took, err := parallel(ctx, files, func(i int) error {
		return up.put(ctx, targets[i], bytes.NewReader(data), size)
	})
	if err != nil {
		return 0, nil, err
	}
	_, err = parallel(ctx, files, func(i int) error {
		return up.complete(ctx, targets[i], size, sha)
	})
	ids := make([]string, files)
	for i, t := range targets {
		ids[i] = t.recordingID
	}
	return took, ids, err
}

// inTurn runs steps once each, starting with the step round picks and
// going round from there, so that no contender always writes first onto
// a disk that has just been flushed.
func inTurn(round int, steps ...func() error) error {
	for i := range steps {
		if err := steps[(round+i)%len(steps)](); err != nil {
			return err
		}
	}
	return nil
}

// median returns the middle of values, or the mean of the two middle
// ones for an even count.
func median(values []float64) float64 {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// uploadRates are the throughputs of one upload benchmark in MiB/s: bota's
// PUTs, its full flow, its PUTs with --disk-sync=false, and the baselines.
type uploadRates struct {
	put, full, noSync, dd, tusd float64
}

// addUploadFigures reports rates. Each goal compares bota with the
// baseline that gives the same durability: dd with bota's default, which
// fsyncs, and tusd, which does not, with bota under --disk-sync=false.
func (e *env) addUploadFigures(label string, rates uploadRates, peakMiB float64, big bool) {
	r := e.report
	r.add(goal(Figure{Benchmark: Uploads, Name: label + ", PUT only", Unit: "MiB/s", Value: rates.put,
		Baseline: "dd conv=fsync", BaselineValue: rates.dd, HigherIsBetter: true},
		"≥ 0.8 × dd", rates.put >= 0.8*rates.dd))
	r.add(Figure{Benchmark: Uploads, Name: label + ", PUT only", Unit: "MiB/s", Value: rates.put,
		Baseline: "tusd, no fsync", BaselineValue: rates.tusd, HigherIsBetter: true})
	r.add(goal(Figure{Benchmark: Uploads, Name: label + ", PUT only, --disk-sync=false", Unit: "MiB/s",
		Value: rates.noSync, Baseline: "tusd, no fsync", BaselineValue: rates.tusd, HigherIsBetter: true},
		"≥ tusd", rates.noSync >= rates.tusd))
	r.add(Figure{Benchmark: Uploads, Name: label + ", full flow", Unit: "MiB/s", Value: rates.full,
		Baseline: "dd conv=fsync", BaselineValue: rates.dd, HigherIsBetter: true})
	r.add(Figure{Benchmark: Uploads, Name: label + ", full flow", Unit: "MiB/s", Value: rates.full,
		Baseline: "tusd, no fsync", BaselineValue: rates.tusd, HigherIsBetter: true})
	peak := Figure{Benchmark: Uploads, Name: label + ", server peak RSS above idle", Unit: "MiB", Value: peakMiB}
	if big {
		peak = goal(peak, "< 64 MiB", peakMiB < 64)
	}
	r.add(peak)
}

// flush writes every dirty page to disk, so that a timed write does not
// pay for the writeback of the one before it.
func flush() { syscall.Sync() }

// settleRSS waits for the server to go quiet, then resets its peak RSS
// and returns its resident set in KiB.
func settleRSS(srv *botaServer) (int64, error) {
	time.Sleep(time.Second)
	if err := srv.resetPeak(); err != nil {
		return 0, fmt.Errorf("reset peak RSS: %w", err)
	}
	rss, _, err := srv.memory()
	return rss, err
}

func rate(bytes int64, d time.Duration) float64 {
	return float64(bytes) / mib / d.Seconds()
}

func fileOpener(path string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return os.Open(path) }
}

// parallel runs fn for 0..n-1 on uploadWorkers goroutines and returns the
// wall time. It stops at the first error.
func parallel(ctx context.Context, n int, fn func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var failed atomic.Bool
	start := time.Now()
	var wg sync.WaitGroup
	for range uploadWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return time.Since(start), firstErr
}

// runDD copies src to dst with dd, 1 MiB blocks, and fsyncs dst.
func runDD(ctx context.Context, src, dst string) error {
	out, err := exec.CommandContext(ctx, "dd", "if="+src, "of="+dst, "bs=1M", "conv=fsync",
		"status=none").CombinedOutput()
	if err != nil {
		return fmt.Errorf("dd: %w: %s", err, out)
	}
	return nil
}

// startTusd starts tusd on its file store in a new folder, installing it
// with TusdInstall first when it is not on PATH or in GOBIN, and returns
// it with the folder it stores uploads in.
func startTusd(ctx context.Context, e *env) (*process, string, error) {
	bin, err := findTusd(ctx, e)
	if err != nil {
		return nil, "", err
	}
	dir, err := e.subdir("tusd")
	if err != nil {
		return nil, "", err
	}
	files := filepath.Join(dir, "files")
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	logPath := filepath.Join(dir, "tusd.log")
	// tusd has no /health endpoint (it returns 404), so startProcess
	// cannot wait for it: readiness is a TCP connect below.
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", port, "-upload-dir", files,
		"-disable-download", "-verbose=false")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start tusd: %w", err)
	}
	p := &process{cmd: cmd, addr: addr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, files, nil
		}
		select {
		case <-p.exited:
			return nil, "", fmt.Errorf("tusd exited during start: %s", p.logTail())
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, "", fmt.Errorf("tusd not listening after 30 s: %s", p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func findTusd(ctx context.Context, e *env) (string, error) {
	if p, err := exec.LookPath("tusd"); err == nil {
		return p, nil
	}
	var gobin string
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		gobin = installedPath(string(out), "tusd")
	}
	if gobin != "" {
		if _, err := os.Stat(gobin); err == nil {
			return gobin, nil
		}
	}
	e.log.Info("TusdInstalling", "command", TusdInstall)
	out, err := exec.CommandContext(ctx, "go", "install", "github.com/tus/tusd/v2/cmd/tusd@v2.9.1").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("install tusd (%s): %w: %s", TusdInstall, err, out)
	}
	if gobin == "" {
		return "", errors.New("tusd installed, but GOBIN and GOPATH are unknown")
	}
	return gobin, nil
}

// installedPath returns where go install puts the command name, given the
// output of "go env GOBIN GOPATH": GOBIN when set, and otherwise the bin
// folder of the first GOPATH entry. It returns "" when both are empty.
func installedPath(goEnv, name string) string {
	lines := strings.Split(strings.TrimRight(goEnv, "\r\n"), "\n")
	if bin := strings.TrimSpace(lines[0]); bin != "" {
		return filepath.Join(bin, name)
	}
	if len(lines) < 2 {
		return ""
	}
	paths := filepath.SplitList(strings.TrimSpace(lines[1]))
	if len(paths) == 0 || paths[0] == "" {
		return ""
	}
	return filepath.Join(paths[0], "bin", name)
}

// tusUpload creates an upload on tusd (POST /files/) and sends the whole
// body in one PATCH.
func tusUpload(ctx context.Context, client *http.Client, base string, open func() (io.ReadCloser, error), size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/files/", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("POST /files/: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	location := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusCreated || location == "" {
		return fmt.Errorf("POST /files/: HTTP %d, Location %q", resp.StatusCode, location)
	}
	if location[0] == '/' {
		location = base + location
	}
	body, err := open()
	if err != nil {
		return err
	}
	defer body.Close()
	req, err = http.NewRequestWithContext(ctx, http.MethodPatch, location, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	resp, err = client.Do(req)
	if err != nil {
		return fmt.Errorf("PATCH upload: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("PATCH upload: HTTP %d", resp.StatusCode)
	}
	return nil
}
