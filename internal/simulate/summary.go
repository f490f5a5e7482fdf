package simulate

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Step names, as used in Summary.Latency, Summary.StepErrors and StepError.
const (
	StepEndUser   = "end-user"
	StepRegister  = "register"
	StepBind      = "bind"
	StepHeartbeat = "heartbeat"
	StepRefresh   = "refresh"
	StepCreate    = "create"
	StepUploadURL = "upload-url"
	StepPut       = "put"
	StepComplete  = "complete"
	StepEndToEnd  = "upload"
)

// maxFailureList caps Summary.Failures, so a run against a broken server
// does not print one line per upload.
const maxFailureList = 100

// summarySteps are the latency rows of the text summary, in order.
var summarySteps = []string{StepCreate, StepUploadURL, StepPut, StepComplete, StepEndToEnd,
	StepHeartbeat, StepEndUser, StepRegister, StepBind, StepRefresh}

// Summary is the outcome of a run. Its JSON form is what
// "bota simulate --json" prints.
type Summary struct {
	RunID         string `json:"run_id"`
	Devices       int    `json:"devices"`
	DevicesReady  int    `json:"devices_ready"`
	UploadsTotal  int    `json:"uploads_total"`
	UploadsOK     int    `json:"uploads_ok"`
	UploadsFailed int    `json:"uploads_failed"`
	// Bytes counts the bytes of acknowledged uploads.
	Bytes      int64 `json:"bytes"`
	Heartbeats int   `json:"heartbeats"`
	// Retries counts attempts sent again after a retriable failure.
	Retries int `json:"retries"`
	// ErrorCount is the sum of Errors: every failed attempt, retried or not.
	ErrorCount int `json:"error_count"`
	// Errors counts failed attempts by kind (see StepError.Kind).
	Errors map[string]int `json:"errors"`
	// StepErrors counts failed attempts by step, then by kind.
	StepErrors      map[string]map[string]int `json:"step_errors"`
	DurationSeconds float64                   `json:"duration_seconds"`
	MiBPerSecond    float64                   `json:"throughput_mib_per_second"`
	UploadsPerSec   float64                   `json:"uploads_per_second"`
	// Latency has one entry per step that succeeded at least once, plus
	// "upload" for create through complete of one recording.
	Latency map[string]Latency `json:"latency"`
	// Canceled is true when the context ended before every upload ran.
	Canceled bool `json:"canceled"`
	// Acknowledged lists the recordings whose upload-complete returned
	// 200, in the order they were acknowledged.
	Acknowledged []Ack `json:"acknowledged"`
	// Failures lists the first failed uploads and device setups.
	Failures []Failure `json:"failures"`
}

// Latency holds percentiles of one step in milliseconds. A step's time
// runs from its first attempt to its success, so retries and backoff
// count.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Ack is an acknowledged upload.
type Ack struct {
	RecordingID string `json:"recording_id"`
	DeviceID    string `json:"device_id"`
	File        string `json:"file"`
	SizeBytes   int64  `json:"size_bytes"`
	// SHA256 is the digest of the file sent, as given in content_sha256.
	SHA256 string `json:"sha256"`
}

// Failure is an upload or a device setup that did not succeed.
type Failure struct {
	Device int    `json:"device"`
	File   string `json:"file,omitempty"`
	Error  string `json:"error"`
}

// collector gathers the numbers of a run from every device goroutine.
type collector struct {
	mu        sync.Mutex
	latencies map[string][]time.Duration
	faults    map[string]map[string]int
	acks      []Ack
	failures  []Failure
	// failureCount counts every failure, kept in failures or not.
	failureCount int

	uploadsDone   atomic.Int64
	uploadsFailed atomic.Int64
	bytes         atomic.Int64
	errors        atomic.Int64
	retries       atomic.Int64
	heartbeats    atomic.Int64
	devicesReady  atomic.Int64
}

func newCollector() *collector {
	return &collector{latencies: map[string][]time.Duration{}, faults: map[string]map[string]int{}}
}

func (c *collector) latency(step string, d time.Duration) {
	c.mu.Lock()
	c.latencies[step] = append(c.latencies[step], d)
	c.mu.Unlock()
}

func (c *collector) fault(step, kind string) {
	c.errors.Add(1)
	c.mu.Lock()
	if c.faults[step] == nil {
		c.faults[step] = map[string]int{}
	}
	c.faults[step][kind]++
	c.mu.Unlock()
}

func (c *collector) retry() { c.retries.Add(1) }

func (c *collector) ack(a Ack) {
	c.uploadsDone.Add(1)
	c.bytes.Add(a.SizeBytes)
	c.mu.Lock()
	c.acks = append(c.acks, a)
	c.mu.Unlock()
}

// fail adds uploads to the failed uploads and keeps f for the summary. It
// returns false once maxFailureList failures are kept, so callers stop
// logging each one.
func (c *collector) fail(f Failure, uploads int) bool {
	c.uploadsFailed.Add(int64(uploads))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failureCount++
	if len(c.failures) < maxFailureList {
		c.failures = append(c.failures, f)
	}
	return c.failureCount <= maxFailureList
}

// summary builds the Summary of a run that took elapsed.
func (c *collector) summary(cfg *Config, elapsed time.Duration) *Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &Summary{
		RunID:           cfg.RunID,
		Devices:         cfg.Devices,
		DevicesReady:    int(c.devicesReady.Load()),
		UploadsTotal:    cfg.Devices * cfg.UploadsPerDevice,
		UploadsOK:       len(c.acks),
		UploadsFailed:   int(c.uploadsFailed.Load()),
		Bytes:           c.bytes.Load(),
		Heartbeats:      int(c.heartbeats.Load()),
		Retries:         int(c.retries.Load()),
		ErrorCount:      int(c.errors.Load()),
		Errors:          map[string]int{},
		StepErrors:      map[string]map[string]int{},
		DurationSeconds: elapsed.Seconds(),
		Latency:         map[string]Latency{},
		Acknowledged:    slices.Clone(c.acks),
		Failures:        slices.Clone(c.failures),
	}
	if s.Acknowledged == nil {
		s.Acknowledged = []Ack{}
	}
	if s.Failures == nil {
		s.Failures = []Failure{}
	}
	for step, kinds := range c.faults {
		s.StepErrors[step] = maps.Clone(kinds)
		for kind, n := range kinds {
			s.Errors[kind] += n
		}
	}
	for step, ds := range c.latencies {
		s.Latency[step] = percentiles(ds)
	}
	if secs := elapsed.Seconds(); secs > 0 {
		s.MiBPerSecond = float64(s.Bytes) / (1 << 20) / secs
		s.UploadsPerSec = float64(s.UploadsOK) / secs
	}
	return s
}

// percentiles returns nearest-rank percentiles of ds.
func percentiles(ds []time.Duration) Latency {
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	rank := func(p float64) float64 {
		i := int(p*float64(len(sorted))+0.999999) - 1
		i = max(0, min(i, len(sorted)-1))
		return milliseconds(sorted[i])
	}
	return Latency{Count: len(sorted), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99),
		Max: milliseconds(sorted[len(sorted)-1])}
}

func milliseconds(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// WriteText writes the summary for people: totals, errors by kind, a
// latency table and the failures kept.
func (s *Summary) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s.writeTotals(tw)
	s.writeLatency(tw)
	s.writeFailures(tw)
	return tw.Flush()
}

func (s *Summary) writeTotals(w io.Writer) {
	fmt.Fprintf(w, "run\t%s\n", s.RunID)
	fmt.Fprintf(w, "devices\t%d (%d ready)\n", s.Devices, s.DevicesReady)
	fmt.Fprintf(w, "uploads\t%d ok, %d failed of %d\n", s.UploadsOK, s.UploadsFailed, s.UploadsTotal)
	fmt.Fprintf(w, "bytes\t%d (%.2f MiB)\n", s.Bytes, float64(s.Bytes)/(1<<20))
	fmt.Fprintf(w, "heartbeats\t%d\n", s.Heartbeats)
	fmt.Fprintf(w, "duration\t%.2f s\n", s.DurationSeconds)
	fmt.Fprintf(w, "throughput\t%.2f MiB/s, %.2f uploads/s\n", s.MiBPerSecond, s.UploadsPerSec)

	fmt.Fprintf(w, "errors\t%d (%d retries)\n", s.ErrorCount, s.Retries)
	for _, kind := range slices.Sorted(maps.Keys(s.Errors)) {
		fmt.Fprintf(w, "  %s\t%d\n", kind, s.Errors[kind])
	}
	if s.Canceled {
		fmt.Fprintf(w, "canceled\tthe run ended before every upload ran\n")
	}
}

func (s *Summary) writeLatency(w io.Writer) {
	if len(s.Latency) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "step\tcount\tp50 ms\tp90 ms\tp99 ms\tmax ms")
	for _, step := range summarySteps {
		l, ok := s.Latency[step]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\n", step, l.Count, l.P50, l.P90, l.P99, l.Max)
	}
}

func (s *Summary) writeFailures(w io.Writer) {
	if len(s.Failures) > 0 {
		fmt.Fprintln(w)
	}
	for _, f := range s.Failures {
		device := fmt.Sprintf("device %d", f.Device)
		if f.File != "" {
			device += " " + f.File
		}
		fmt.Fprintf(w, "failed\t%s: %s\n", device, f.Error)
	}
}
