package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	fleet "github.com/botaserver/bota/internal/simulate"
)

// simulateFlags are the settings of "bota simulate".
type simulateFlags struct {
	urls           string
	key            string
	devices        int
	files          string
	uploads        int
	heartbeats     int
	concurrency    int
	timeout        time.Duration
	retries        int
	attemptTimeout time.Duration
	refresh        bool
	json           bool
	quiet          bool
	verbose        bool
	prefix         string
}

func simulate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("bota simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f simulateFlags
	fs.StringVar(&f.urls, "url", "", "server base URL; a comma-separated list spreads devices over "+
		"several nodes (env BOTA_URL)")
	fs.StringVar(&f.key, "key", "", "secret API key, sk_test_... or sk_live_... "+
		"(env BOTA_API_KEY or BOTA_API_KEY_FILE)")
	fs.IntVar(&f.devices, "devices", 10, "number of simulated devices")
	fs.StringVar(&f.files, "files", "", "folder of audio files to upload "+
		"(.opus .ogg .wav .mp3 .m4a .flac .webm .aac)")
	fs.IntVar(&f.uploads, "uploads-per-device", 0, "recordings each device uploads (0: each file once)")
	fs.IntVar(&f.heartbeats, "heartbeats", 1, "heartbeats each device sends before its first upload; "+
		"it also sends one after each upload (0: no heartbeats at all)")
	fs.IntVar(&f.concurrency, "concurrency", 0, "devices running at once (0: all of them)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "time limit of the whole run")
	fs.IntVar(&f.retries, "retries", fleet.DefaultRetries, "times a failed request is sent again")
	fs.DurationVar(&f.attemptTimeout, "attempt-timeout", fleet.DefaultAttemptTimeout,
		"time limit of each request attempt, file uploads included")
	fs.BoolVar(&f.refresh, "refresh", false, "refresh each device token once, halfway through its uploads")
	fs.BoolVar(&f.json, "json", false, "print the summary as JSON, with the acknowledged recordings")
	fs.BoolVar(&f.quiet, "quiet", false, "print no progress on standard error")
	fs.BoolVar(&f.verbose, "verbose", false, "log every retry on standard error")
	fs.StringVar(&f.prefix, "prefix", fleet.DefaultPrefix, "start of end user external ids and "+
		"device serial numbers")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		unexpectedArgument(stderr, "simulate", args, fs.Args())
		return errUsage
	}

	cfg, err := f.config(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "bota simulate:", err)
		return errUsage
	}
	var logOut io.Writer = stderr
	if !f.quiet {
		cfg.Progress = fleet.NewProgress(stderr, isTerminal(stderr), 0)
		logOut = cfg.Progress
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))

	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	summary, err := fleet.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}

	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(summary)
	} else {
		err = summary.WriteText(stdout)
	}
	if err != nil {
		return fmt.Errorf("simulate: write summary: %w", err)
	}
	if summary.UploadsFailed > 0 || summary.UploadsOK < summary.UploadsTotal {
		return fmt.Errorf("simulate: %d of %d uploads failed", summary.UploadsTotal-summary.UploadsOK,
			summary.UploadsTotal)
	}
	return nil
}

// config turns the flags and environment into a fleet.Config.
func (f *simulateFlags) config(getenv func(string) string) (fleet.Config, error) {
	var cfg fleet.Config
	urls := f.urls
	if urls == "" {
		urls = getenv("BOTA_URL")
	}
	for u := range strings.SplitSeq(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.URLs = append(cfg.URLs, u)
		}
	}
	if len(cfg.URLs) == 0 {
		return cfg, errors.New("--url or BOTA_URL is required, such as http://127.0.0.1:8080")
	}
	key, err := apiKey(f.key, getenv)
	if err != nil {
		return cfg, err
	}
	if f.files == "" {
		return cfg, errors.New("--files is required: a folder of audio files")
	}
	files, err := fleet.FindAudio(f.files)
	if err != nil {
		return cfg, err
	}
	if f.devices < 1 || f.uploads < 0 || f.concurrency < 0 || f.heartbeats < 0 || f.retries < 0 {
		return cfg, errors.New("--devices must be at least 1, and --uploads-per-device, " +
			"--concurrency, --heartbeats and --retries must not be negative")
	}
	if f.timeout <= 0 || f.attemptTimeout <= 0 {
		return cfg, errors.New("--timeout and --attempt-timeout must be positive durations such as 10m")
	}

	cfg.APIKey = key
	cfg.Devices = f.devices
	cfg.Files = files
	cfg.UploadsPerDevice = f.uploads
	// In Config, zero means the default, so the flag's 0 (none) maps to -1.
	cfg.Heartbeats = f.heartbeats
	if f.heartbeats == 0 {
		cfg.Heartbeats = -1
	}
	cfg.Retries = f.retries
	if f.retries == 0 {
		cfg.Retries = -1
	}
	cfg.Concurrency = f.concurrency
	cfg.AttemptTimeout = f.attemptTimeout
	cfg.Refresh = f.refresh
	cfg.Prefix = f.prefix
	return cfg, cfg.Validate()
}

// apiKey returns the key from the flag, BOTA_API_KEY or the file named by
// BOTA_API_KEY_FILE, in that order.
func apiKey(flagValue string, getenv func(string) string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := getenv("BOTA_API_KEY"); v != "" {
		return v, nil
	}
	if path := getenv("BOTA_API_KEY_FILE"); path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read BOTA_API_KEY_FILE: %w", err)
		}
		if key := strings.TrimSpace(string(raw)); key != "" {
			return key, nil
		}
		return "", fmt.Errorf("BOTA_API_KEY_FILE %s is empty", path)
	}
	return "", errors.New("--key, BOTA_API_KEY or BOTA_API_KEY_FILE is required")
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
