// Package simulate plays a fleet of 4G recording devices against a Bota
// server: each device gets an end user, registers, binds, sends heartbeats
// and uploads audio files through signed URLs. It is the load generator of
// "bota simulate", of the benchmarks and of the fault tests.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Defaults of Config fields left at their zero value.
const (
	DefaultPrefix         = "sim"
	DefaultRetries        = 8
	DefaultAttemptTimeout = 2 * time.Minute
)

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)

// Config describes a run. Zero values take the defaults named per field.
type Config struct {
	// URLs are the servers' base URLs, such as http://127.0.0.1:8080.
	// Device i talks to URLs[i%len(URLs)], so a fleet can be spread over
	// several nodes. Required.
	URLs []string
	// APIKey is a secret key (sk_test_ or sk_live_) used to create end
	// users and to register and bind devices. Required.
	APIKey string
	// Devices is the fleet size. Required.
	Devices int
	// Files are the audio files to upload, by path. Required.
	Files []string
	// UploadsPerDevice is the number of recordings each device uploads,
	// going through Files in turn from a per-device offset. Default:
	// len(Files), so each device uploads each file once.
	UploadsPerDevice int
	// Heartbeats is the number of heartbeats each device sends before its
	// first upload; a device also sends one after each upload. Negative
	// turns heartbeats off. Default (0): 1.
	Heartbeats int
	// Concurrency bounds how many devices run at once. Default: Devices.
	Concurrency int
	// Retries is how many times a failed request is sent again. Default 8;
	// negative means no retries.
	Retries int
	// AttemptTimeout bounds each attempt of a request, the file PUT
	// included. Default 2 minutes.
	AttemptTimeout time.Duration
	// Refresh makes each device refresh its token once, halfway through
	// its uploads, and go on with the new token.
	Refresh bool
	// Prefix starts the external ids of end users and the serial numbers
	// of devices: "<Prefix>-<RunID>-<n>". Default "sim".
	Prefix string
	// RunID tells the records of one run apart. Default: random.
	RunID string
	// Client sends every request, for example through a fault-injecting
	// proxy. Default: a client with keep-alive pools sized for the fleet.
	Client *http.Client
	// Progress, when set, reports progress while the run goes on.
	Progress *Progress
	// Logger receives retries (Debug) and failed uploads (Warn). Default:
	// discard.
	Logger *slog.Logger
}

// Validate reports the first invalid field of cfg, as Run would.
func (cfg Config) Validate() error {
	_, err := cfg.withDefaults()
	return err
}

// withDefaults validates cfg and returns it with defaults applied.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.URLs) == 0 {
		return cfg, errors.New("no server URL given")
	}
	urls := make([]string, len(cfg.URLs))
	for i, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, fmt.Errorf("server URL %q is invalid: use a base URL such as http://127.0.0.1:8080", raw)
		}
		urls[i] = strings.TrimSuffix(raw, "/")
	}
	cfg.URLs = urls
	switch {
	case cfg.APIKey == "":
		return cfg, errors.New("no API key given")
	case cfg.Devices <= 0:
		return cfg, fmt.Errorf("devices must be at least 1; got %d", cfg.Devices)
	case len(cfg.Files) == 0:
		return cfg, errors.New("no audio files given")
	case cfg.UploadsPerDevice < 0:
		return cfg, fmt.Errorf("uploads per device must not be negative; got %d", cfg.UploadsPerDevice)
	case cfg.Concurrency < 0:
		return cfg, fmt.Errorf("concurrency must not be negative; got %d", cfg.Concurrency)
	}
	if cfg.UploadsPerDevice == 0 {
		cfg.UploadsPerDevice = len(cfg.Files)
	}
	if cfg.Heartbeats == 0 {
		cfg.Heartbeats = 1
	}
	if cfg.Concurrency == 0 || cfg.Concurrency > cfg.Devices {
		cfg.Concurrency = cfg.Devices
	}
	switch {
	case cfg.Retries == 0:
		cfg.Retries = DefaultRetries
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !prefixPattern.MatchString(cfg.Prefix) {
		return cfg, fmt.Errorf("prefix %q is invalid: use 1 to 40 of A-Z, a-z, 0-9, _ and -", cfg.Prefix)
	}
	if cfg.RunID == "" {
		cfg.RunID = newKey()[:8]
	}
	if cfg.Client == nil {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.MaxIdleConnsPerHost = cfg.Concurrency
		transport.MaxIdleConns = 0
		cfg.Client = &http.Client{Transport: transport}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// Run plays the fleet described by cfg until every upload has succeeded
// or failed, or ctx ends. It returns an error only when the run cannot
// start (invalid config, unreadable files); failed uploads are counted in
// the Summary.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	files := make([]audioFile, len(cfg.Files))
	for i, path := range cfg.Files {
		if files[i], err = loadFile(path); err != nil {
			return nil, err
		}
	}

	stats := newCollector()
	cl := &client{http: cfg.Client, retries: cfg.Retries, attemptTimeout: cfg.AttemptTimeout,
		stats: stats, log: cfg.Logger}
	cfg.Logger.Info("SimulationStarted", "run_id", cfg.RunID, "devices", cfg.Devices,
		"uploads", cfg.Devices*cfg.UploadsPerDevice, "files", len(files))
	if cfg.Progress != nil {
		cfg.Progress.begin(stats, cfg.Devices*cfg.UploadsPerDevice)
	}

	start := time.Now()
	slots := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range cfg.Devices {
		d := &device{index: i, cfg: &cfg, files: files, client: cl, stats: stats,
			base: cfg.URLs[i%len(cfg.URLs)]}
		wg.Go(func() {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
				d.run(ctx)
			case <-ctx.Done():
				d.abandon(0, ctx.Err())
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	if cfg.Progress != nil {
		cfg.Progress.end()
	}
	s := stats.summary(&cfg, elapsed)
	s.Canceled = ctx.Err() != nil
	cfg.Logger.Info("SimulationFinished", "run_id", cfg.RunID, "uploads_ok", s.UploadsOK,
		"uploads_failed", s.UploadsFailed, "errors", s.ErrorCount, "duration", elapsed.String())
	return s, nil
}
