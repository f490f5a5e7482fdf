package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/botaserver/bota/internal/bench"
)

// benchCommand runs the benchmarks against servers it starts from this
// executable, prints the table and writes the JSON report.
func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bota bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "also write the report as JSON to this file")
	only := fs.String("only", "", "comma-separated benchmarks to run: "+strings.Join(bench.All, ",")+
		" (default: all)")
	small := fs.Bool("small", false, "shrink every size for a quick run (figures are not comparable to a full run)")
	workDir := fs.String("work-dir", "", "folder for data and test files (default: a temporary folder); "+
		"the upload figures are for the disk it is on")
	verbose := fs.Bool("v", false, "log progress to standard error")
	// The baseline server of the heartbeat and read benchmarks runs as a
	// child process started with this flag.
	bare := fs.String("serve-bare", "", "internal: serve the bare baseline handler on this address")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		unexpectedArgument(stderr, "bench", args, fs.Args())
		return errUsage
	}
	if *bare != "" {
		return bench.ServeBare(ctx, *bare)
	}

	binary, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the bota executable: %w", err)
	}
	cfg := bench.Config{Binary: binary, Small: *small, WorkDir: *workDir}
	if *only != "" {
		for name := range strings.SplitSeq(*only, ",") {
			cfg.Only = append(cfg.Only, strings.TrimSpace(name))
		}
	}
	if *verbose {
		cfg.Log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	report, runErr := bench.Run(ctx, cfg)
	if report == nil {
		return runErr
	}
	if err := report.WriteTable(stdout); err != nil {
		return err
	}
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("create %s: %w", *out, err)
		}
		if err := report.WriteJSON(f); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", *out, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
	}
	if runErr != nil {
		return runErr
	}
	if len(report.Errors) > 0 {
		return fmt.Errorf("%d benchmarks failed", len(report.Errors))
	}
	return nil
}
