package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botaserver/bota/internal/config"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/store/postgres"
	"github.com/botaserver/bota/internal/store/sqlite"
)

// database is an open store and, on PostgreSQL, its pgx pool.
type database struct {
	store *store.Store
	pool  *pgxpool.Pool
	// where names the database for logs, without credentials.
	where string
}

func (d *database) Close() {
	d.store.Close()
	if d.pool != nil {
		d.pool.Close()
	}
}

// openDatabase opens the configured database and applies migrations.
func openDatabase(ctx context.Context, cfg *config.Config) (*database, error) {
	url := cfg.DatabaseURL
	var db *database
	switch {
	case url == "":
		path := filepath.Join(cfg.DataDir, "bota.db")
		st, err := sqlite.Open(path)
		if err != nil {
			return nil, err
		}
		db = &database{store: st, where: "sqlite:" + path}
	case strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://"):
		st, pool, err := postgres.Open(ctx, url)
		if err != nil {
			return nil, err
		}
		db = &database{store: st, pool: pool, where: "postgres"}
	default:
		return nil, fmt.Errorf("--database-url must start with postgres:// (or be empty for SQLite), got %q", redact(url))
	}
	if err := db.store.Migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate database: %w", err)
	}
	return db, nil
}

// openExistingDatabase opens the database like openDatabase, but refuses to
// create an SQLite file: commands that act on existing projects would
// otherwise leave an empty database in a mistyped or default folder.
func openExistingDatabase(ctx context.Context, cfg *config.Config) (*database, error) {
	if cfg.DatabaseURL == "" {
		path := filepath.Join(cfg.DataDir, "bota.db")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s; pass --data-dir with the server's data folder, or --database-url", path)
		}
	}
	return openDatabase(ctx, cfg)
}

// redact hides a URL's password.
func redact(url string) string {
	at := strings.LastIndex(url, "@")
	scheme := strings.Index(url, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return url
	}
	return url[:scheme+3] + "***" + url[at:]
}

func newLogger(cfg *config.Config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", cfg.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", cfg.LogFormat)
}

// quietHandler passes on records at or above min only. River logs routine
// state (job counts every few seconds, migrations) at Info, which would
// drown the server's own log lines.
type quietHandler struct {
	slog.Handler
	min slog.Level
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(attrs), h.min}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name), h.min}
}

// jobsLogger is the logger River gets: warnings and errors only, unless
// the server logs at debug level.
func jobsLogger(cfg *config.Config, log *slog.Logger) *slog.Logger {
	l := log.With("component", "jobs")
	if cfg.LogLevel == "debug" {
		return l
	}
	return slog.New(quietHandler{l.Handler(), slog.LevelWarn})
}
