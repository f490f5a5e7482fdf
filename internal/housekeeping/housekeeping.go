// Package housekeeping removes what uploads leave behind: media records
// and objects of uploads that were never finished, temp files of the local
// blob store, and old idempotency keys.
package housekeeping

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/store"
)

// Ages after which the sweep removes things.
const (
	// StaleMediaAge is how long after its upload URL expired a pending or
	// expired media record and its object are kept.
	StaleMediaAge = 24 * time.Hour
	// TempFileAge is the age of an unfinished temp file of the local store
	// that the sweep removes.
	TempFileAge = 24 * time.Hour
	// IdempotencyTTL is how long an Idempotency-Key and its response are
	// kept.
	IdempotencyTTL = 24 * time.Hour
	// DefaultInterval is the time between sweeps when Config.Interval is 0.
	DefaultInterval = time.Hour
)

// mediaBatch is how many stale media one query returns.
const mediaBatch = 100

// Config configures the sweep.
type Config struct {
	// Store holds the media records and idempotency keys.
	Store *store.Store
	// Blob holds the media objects. When it has a SweepTemp method (the
	// local disk store), its old temp files are removed too.
	Blob blob.Store
	// Interval is the time between sweeps; 0 means DefaultInterval.
	Interval time.Duration
	// Logger receives events; nil means slog.Default().
	Logger *slog.Logger
}

// Result counts what one sweep removed.
type Result struct {
	Media           int
	TempFiles       int
	IdempotencyKeys int64
}

// tempSweeper is implemented by blob stores that keep temp files of
// unfinished uploads (disk.Store).
type tempSweeper interface {
	SweepTemp(olderThan time.Duration) (int, error)
}

// Run sweeps once at start and then every cfg.Interval until ctx is done.
// A failed sweep is logged and retried at the next interval. Run returns
// nil when ctx is cancelled.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Store == nil || cfg.Blob == nil {
		return errors.New("housekeeping: Store and Blob are required")
	}
	interval := cfg.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	log := logger(cfg)
	log.Info("HousekeepingStarted", "interval", interval.String())

	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if _, err := SweepOnce(ctx, cfg); err != nil && ctx.Err() == nil {
			log.Error("HousekeepingFailed", "err", err)
		}
		select {
		case <-ctx.Done():
			log.Info("HousekeepingStopped")
			return nil
		case <-tick.C:
		}
	}
}

// SweepOnce runs every step of the sweep once. Each step runs even when an
// earlier one failed; the error joins the failures.
func SweepOnce(ctx context.Context, cfg Config) (Result, error) {
	log := logger(cfg)
	var res Result
	var errs []error

	n, err := sweepMedia(ctx, cfg, log)
	res.Media = n
	if err != nil {
		errs = append(errs, err)
	}

	if ts, ok := cfg.Blob.(tempSweeper); ok {
		n, err := ts.SweepTemp(TempFileAge)
		res.TempFiles = n
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep temp files: %w", err))
		}
	}

	purged, err := cfg.Store.PurgeIdempotency(ctx, IdempotencyTTL)
	res.IdempotencyKeys = purged
	if err != nil {
		errs = append(errs, fmt.Errorf("purge idempotency keys: %w", err))
	}

	if res.Media > 0 || res.TempFiles > 0 || res.IdempotencyKeys > 0 {
		log.Info("HousekeepingSwept", "media", res.Media, "temp_files", res.TempFiles,
			"idempotency_keys", res.IdempotencyKeys)
	}
	return res, errors.Join(errs...)
}

// sweepMedia removes pending and expired media whose upload URL expired
// more than StaleMediaAge ago: the object first, then the record, so that
// an object whose delete failed keeps its record and is retried by the
// next sweep.
func sweepMedia(ctx context.Context, cfg Config, log *slog.Logger) (int, error) {
	cutoff := cfg.Store.Now().Add(-StaleMediaAge)
	removed := 0
	for {
		batch, err := cfg.Store.StaleMedia(ctx, cutoff, mediaBatch)
		if err != nil {
			return removed, fmt.Errorf("list stale media: %w", err)
		}
		failed := 0
		for _, m := range batch {
			if err := cfg.Blob.Delete(ctx, m.StorageKey); err != nil {
				log.Warn("StaleMediaDeleteFailed", "media_id", m.ID, "recording_id", m.RecordingID,
					"err", err)
				failed++
				continue
			}
			if err := cfg.Store.DeleteMedia(ctx, m.ID); err != nil {
				return removed, fmt.Errorf("delete media %s: %w", m.ID, err)
			}
			log.Debug("StaleMediaRemoved", "media_id", m.ID, "recording_id", m.RecordingID,
				"status", m.Status)
			removed++
		}
		// A batch with failures would come back unchanged, so the next
		// sweep retries it instead of this loop.
		if len(batch) < mediaBatch || failed > 0 {
			if failed > 0 {
				return removed, fmt.Errorf("delete %d stale media objects failed", failed)
			}
			return removed, nil
		}
	}
}

func logger(cfg Config) *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.Default()
}
