// Command pgcluster starts a throwaway PostgreSQL cluster, prints its
// postgres:// URL on one line of standard output, and keeps it running until
// standard input closes or the process receives SIGINT or SIGTERM. Then it
// stops the server and removes the cluster folder. scripts/test.sh runs it so
// that every test binary shares one cluster through BOTA_TEST_DATABASE_URL.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/botaserver/bota/internal/testenv"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	dbURL, stop, err := testenv.StartPostgresCluster()
	if err != nil {
		logger.Error("ClusterStartFailed", "error", err)
		os.Exit(1)
	}
	defer stop()

	if _, err := fmt.Println(dbURL); err != nil {
		logger.Error("URLWriteFailed", "error", err)
		return
	}
	logger.Info("ClusterStarted", "url", dbURL)

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	stdinClosed := make(chan struct{})
	go func() {
		// Input is discarded because only the end of stdin matters.
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()

	select {
	case <-ctx.Done():
		logger.Info("ClusterStopping", "reason", "signal")
	case <-stdinClosed:
		logger.Info("ClusterStopping", "reason", "stdin closed")
	}
}
