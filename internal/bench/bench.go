// Package bench measures the bota server against baselines in the same
// run: heartbeats against a bare net/http handler, uploads against dd and
// tusd, the transcription round trip against pocketsphinx run by hand,
// and API reads against a handler serving the same bytes and against the
// store called directly. Every figure is reported with its baseline and
// the ratio of the two, so that runs on different machines compare.
//
// "bota bench" runs it; docs/benchmarks.md explains the table.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Benchmark names, as --only takes them.
const (
	Heartbeats = "heartbeats"
	Uploads    = "uploads"
	RoundTrip  = "roundtrip"
	Reads      = "reads"
)

// All lists every benchmark in the order Run runs them.
var All = []string{Heartbeats, Uploads, RoundTrip, Reads}

// Config describes a run.
type Config struct {
	// Binary is the bota executable to start servers from. Required.
	Binary string
	// Only names the benchmarks to run; empty runs All.
	Only []string
	// Small shrinks every size, for a quick run.
	Small bool
	// WorkDir is where the run makes its folder of data dirs and test
	// files (the system's temporary folder when empty). It should be on
	// the disk the figures are meant for.
	WorkDir string
	// Log receives progress. Default: discard.
	Log *slog.Logger
}

// Figure is one measured number and its baseline.
type Figure struct {
	Benchmark string  `json:"benchmark"`
	Name      string  `json:"name"`
	Unit      string  `json:"unit"`
	Value     float64 `json:"value"`
	// Baseline names what Value is compared with; empty when the figure
	// has none (an absolute measure such as memory).
	Baseline      string  `json:"baseline,omitempty"`
	BaselineValue float64 `json:"baseline_value,omitempty"`
	// Ratio is Value / BaselineValue.
	Ratio float64 `json:"ratio,omitempty"`
	// HigherIsBetter is set for rates and unset for times and memory, so a
	// Ratio above 1 is good only when it is set.
	HigherIsBetter bool `json:"higher_is_better"`
	// Goal states the target, and Met whether this run reached it.
	Goal string `json:"goal,omitempty"`
	Met  *bool  `json:"met,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Machine Machine  `json:"machine"`
	Small   bool     `json:"small"`
	Figures []Figure `json:"figures"`
	// Notes explain conditions of the run that affect the figures.
	Notes []string `json:"notes"`
	// Errors lists benchmarks that failed; the others still ran.
	Errors          []string `json:"errors"`
	DurationSeconds float64  `json:"duration_seconds"`
}

func (r *Report) add(f Figure) {
	if f.BaselineValue != 0 {
		f.Ratio = f.Value / f.BaselineValue
	}
	r.Figures = append(r.Figures, f)
}

// goal records whether f met its goal.
func goal(f Figure, text string, met bool) Figure {
	f.Goal = text
	f.Met = &met
	return f
}

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// env is the state the benchmarks of one run share.
type env struct {
	cfg    Config
	dir    string
	log    *slog.Logger
	report *Report
	// postgresURL is the admin URL of the run's PostgreSQL cluster, or ""
	// before the first benchmark that needs it starts it.
	postgresURL  string
	stopPostgres func()
	databases    int
}

// Run runs the selected benchmarks and returns their report. A benchmark
// that fails is listed in Report.Errors and the others still run; Run
// returns an error only when the run cannot start.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Binary == "" {
		return nil, fmt.Errorf("bench: no bota binary given")
	}
	only := cfg.Only
	if len(only) == 0 {
		only = All
	}
	for _, name := range only {
		if !slices.Contains(All, name) {
			return nil, fmt.Errorf("bench: unknown benchmark %q; choose from %s", name, strings.Join(All, ", "))
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// The run works in a folder of its own, inside WorkDir when one is
	// given, and removes it at the end.
	dir, err := os.MkdirTemp(cfg.WorkDir, "bota-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: create work folder: %w", err)
	}
	defer os.RemoveAll(dir)

	start := time.Now()
	report := &Report{Machine: DescribeMachine(), Small: cfg.Small, Figures: []Figure{}, Notes: []string{},
		Errors: []string{}}
	e := &env{cfg: cfg, dir: dir, log: cfg.Log, report: report}
	defer e.close()
	runs := map[string]func(context.Context) error{
		Heartbeats: e.heartbeats,
		Uploads:    e.uploads,
		RoundTrip:  e.roundTrip,
		Reads:      e.reads,
	}
	for _, name := range All {
		if !slices.Contains(only, name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		e.log.Info("BenchmarkStarted", "benchmark", name)
		t0 := time.Now()
		if err := runs[name](ctx); err != nil {
			e.log.Error("BenchmarkFailed", "benchmark", name, "err", err)
			report.Errors = append(report.Errors, name+": "+err.Error())
			continue
		}
		e.log.Info("BenchmarkFinished", "benchmark", name, "duration", time.Since(t0).Round(time.Second).String())
	}
	report.DurationSeconds = time.Since(start).Seconds()
	return report, ctx.Err()
}

func (e *env) close() {
	if e.stopPostgres != nil {
		e.stopPostgres()
	}
}

// size returns full, or small when the run is small.
func (e *env) size(full, small int) int {
	if e.cfg.Small {
		return small
	}
	return full
}

func (e *env) duration(full, small time.Duration) time.Duration {
	if e.cfg.Small {
		return small
	}
	return full
}

// subdir creates a new folder in the work folder.
func (e *env) subdir(name string) (string, error) {
	return os.MkdirTemp(e.dir, name+"-")
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people: the machine, then one row per
// figure with bota's value, the baseline's, their ratio and the goal.
func (r *Report) WriteTable(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "machine: %d cores, %d MiB, %s, %s, %s\n", m.Cores, m.MemoryMiB, m.CPU, m.OS, m.GoVersion)
	commit := m.Commit
	if commit == "" {
		commit = "unknown"
	}
	size := "full"
	if r.Small {
		size = "small (--small)"
	}
	fmt.Fprintf(w, "commit %s, %s, load average %.2f at start, sizes %s, took %.0f s\n\n", commit,
		m.Date.Format(time.RFC3339), m.LoadAverage, size, r.DurationSeconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tfigure\tbota\tbaseline\tratio\tgoal")
	for _, f := range r.Figures {
		base, ratio := "-", "-"
		if f.Baseline != "" {
			base = fmt.Sprintf("%s %s (%s)", number(f.BaselineValue), f.Unit, f.Baseline)
			better := "lower is better"
			if f.HigherIsBetter {
				better = "higher is better"
			}
			ratio = fmt.Sprintf("%.2f (%s)", f.Ratio, better)
		}
		g := "-"
		if f.Goal != "" {
			g = f.Goal
			if f.Met != nil && *f.Met {
				g += ": met"
			} else if f.Met != nil {
				g += ": NOT met"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\n", f.Benchmark, f.Name, number(f.Value), f.Unit, base, ratio, g)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "FAILED: %s\n", e)
	}
	return nil
}

// number formats v with about three significant digits.
func number(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 100:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}
