package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/blob/disk"
	"github.com/botaserver/bota/internal/blob/s3"
	"github.com/botaserver/bota/internal/config"
	"github.com/botaserver/bota/internal/housekeeping"
	"github.com/botaserver/bota/internal/ids"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/webhook"
)

// serveGCPercent is the garbage collector's target for serve when the
// GOGC environment variable does not set one.
const serveGCPercent = 400

func serve(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("bota serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, rest, err := parseFlags(fs, "serve", args, getenv)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		unexpectedArgument(stderr, "serve", args, rest)
		return errUsage
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key must be given together")
	}
	if cfg.TLSCert != "" {
		// Load the pair now, so a bad file stops the server before it
		// opens anything.
		if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return fmt.Errorf("load --tls-cert and --tls-key: %w", err)
		}
	}
	if cfg.JobRescueAfter <= transcriptionTimeout+time.Minute {
		return fmt.Errorf("--job-rescue-after must be longer than %s, a minute over the %s job timeout, got %s",
			transcriptionTimeout+time.Minute, transcriptionTimeout, cfg.JobRescueAfter)
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	if getenv("GOGC") == "" {
		// The server's live heap is small and each request allocates, so
		// with Go's default target (100) collection took about a tenth of
		// the CPU under a heartbeat load. 400 lets the heap grow to five
		// times its live size between collections: a few more MiB.
		debug.SetGCPercent(serveGCPercent)
	}

	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	log.Info("DatabaseOpened", "database", db.where)

	secret, err := serverSecret(ctx, db.store, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	publicURL := publicURLFor(cfg, ln.Addr().String())

	blobs, uploads, err := openBlobStore(ctx, cfg, publicURL, secret, log)
	if err != nil {
		ln.Close()
		return err
	}

	nodeID := ids.New("node")
	pl, err := newPipeline(ctx, cfg, db, blobs, secret, nodeID, log)
	if err != nil {
		ln.Close()
		return err
	}
	// The first project and its keys are made only now, so a start that
	// fails on a setting does not print keys the user may miss.
	if err := firstStart(ctx, db.store, cfg, stdout); err != nil {
		ln.Close()
		return err
	}

	srv := api.New(api.Config{
		AdminToken:             cfg.AdminToken,
		Secret:                 secret,
		RateLimit:              cfg.RateLimit,
		DeviceRateLimit:        cfg.DeviceRate,
		TranscriptionRateLimit: cfg.TranscribeMin,
		DeviceTokenTTL:         cfg.DeviceTTL,
		PublicURL:              publicURL,
		MaxFileSize:            cfg.MaxFileSize,
		MaxMedia:               cfg.MaxMedia,
		Pipeline:               pl.pipeline,
		OnEvent:                pl.dispatcher.Wake,
		Webhooks:               pl.webhooks,
		WebhookGuard:           webhook.GuardConfig{AllowPrivate: cfg.WebhookPrivate},
	}, db.store, blobs, log)
	if uploads != nil {
		srv.Mount("/uploads/", uploads)
	}
	if err := srv.Register(newQueueCollector(pl.queue)); err != nil {
		log.Warn("MetricsRegisterFailed", "err", err)
	}

	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { trackCluster(bg, db.store, srv, pl, nodeID, log) })
	if db.pool == nil {
		// One process owns an SQLite file, so any job still marked
		// running was cut off by a crash of this server.
		if n, err := pl.queue.RescueAll(ctx); err != nil {
			log.Warn("JobRescueFailed", "err", err)
		} else if n > 0 {
			log.Info("JobsRescued", "count", n)
		}
		// Requests cut off by that crash still hold their Idempotency-Keys.
		if n, err := db.store.ReleaseRunningIdempotency(ctx); err != nil {
			log.Warn("IdempotencyReleaseFailed", "err", err)
		} else if n > 0 {
			log.Info("IdempotencyKeysReleased", "count", n)
		}
		// Webhook concurrency leases of the crashed run would otherwise
		// hold their endpoint's slots until they expire.
		if _, err := db.store.ClearWebhookLeases(ctx); err != nil {
			log.Warn("WebhookLeaseClearFailed", "err", err)
		}
	}
	if err := pl.queue.Start(ctx); err != nil {
		ln.Close()
		stopBackground()
		wg.Wait()
		return fmt.Errorf("start job queue: %w", err)
	}
	wg.Go(func() { pl.dispatcher.Run(bg) })
	wg.Go(func() {
		if err := housekeeping.Run(bg, housekeeping.Config{Store: db.store, Blob: blobs, Logger: log}); err != nil {
			log.Error("HousekeepingStopped", "err", err)
		}
	})

	httpServer := &http.Server{
		Handler:           idleBody(srv.Handler(), cfg.BodyIdleTimeout),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			errc <- httpServer.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- httpServer.Serve(ln)
		}
	}()
	log.Info("ServerStarted", "addr", ln.Addr().String(), "public_url", publicURL, "node", nodeID,
		"tls", cfg.TLSCert != "")

	select {
	case err := <-errc:
		stopBackground()
		wg.Wait()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("ShutdownStarted", "timeout", cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		log.Warn("ShutdownIncomplete", "err", err)
	}
	if err := pl.queue.Stop(shutdownCtx); err != nil {
		log.Warn("JobQueueStopIncomplete", "err", err)
	}
	stopBackground()
	wg.Wait()
	log.Info("ServerStopped")
	return nil
}

// serverSecret returns the key that signs URLs and cursors: the configured
// one, or a random one stored in the database on first start so every node
// of a cluster shares it.
func serverSecret(ctx context.Context, st *store.Store, cfg *config.Config) ([]byte, error) {
	if cfg.SecretKey != "" {
		if len(cfg.SecretKey) < 32 {
			return nil, errors.New("--secret-key must be at least 32 characters")
		}
		return []byte(cfg.SecretKey), nil
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	v, err := st.InitSetting(ctx, "server_secret", hex.EncodeToString(buf))
	if err != nil {
		return nil, fmt.Errorf("load server secret: %w", err)
	}
	return []byte(v), nil
}

// firstStart creates a default project when the database has none, and
// prints its keys once on standard output (never through the log).
func firstStart(ctx context.Context, st *store.Store, cfg *config.Config, stdout io.Writer) error {
	n, err := st.CountProjects(ctx)
	if err != nil || n > 0 {
		return err
	}
	p, _, secrets, err := api.CreateProjectWithKeys(ctx, st, "Default project")
	if err != nil {
		return fmt.Errorf("create default project: %w", err)
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	base := strings.TrimSuffix(cfg.PublicURL, "/")
	if base == "" {
		base = scheme + "://" + cfg.Addr
	}
	fmt.Fprintf(stdout, "Created project %s with these API keys (shown only now, store them safely):\n", p.ID)
	fmt.Fprintf(stdout, "  test key: %s\n", secrets[0])
	fmt.Fprintf(stdout, "  live key: %s\n", secrets[1])
	fmt.Fprintf(stdout, "Try it: curl -H 'Authorization: Bearer %s' %s/v1/devices\n", secrets[0], base)
	return nil
}

// publicURLFor returns the base URL signed URLs are built on.
func publicURLFor(cfg *config.Config, listenAddr string) string {
	if cfg.PublicURL != "" {
		return strings.TrimSuffix(cfg.PublicURL, "/")
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(listenAddr)
	if err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		listenAddr = net.JoinHostPort("127.0.0.1", port)
	}
	return scheme + "://" + listenAddr
}

// openBlobStore opens S3 when --storage-url is set and the data dir
// otherwise; the local store also returns its /uploads/ handler.
func openBlobStore(ctx context.Context, cfg *config.Config, publicURL string, secret []byte, log *slog.Logger) (blob.Store, http.Handler, error) {
	if cfg.StorageURL != "" {
		st, err := s3.New(ctx, s3.Config{URL: cfg.StorageURL, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("open S3 storage: %w", err)
		}
		return st, nil, nil
	}
	st, err := disk.New(disk.Config{
		Dir:       filepath.Join(cfg.DataDir, "media"),
		PublicURL: publicURL,
		Secret:    secret,
		MaxSize:   cfg.MaxFileSize,
		Logger:    log,
		NoSync:    !cfg.DiskSync,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("open local storage: %w", err)
	}
	return st, st.Handler(), nil
}

// rescueOrphans hands jobs of nodes that stopped heartbeating (30 s) to
// the living ones, so a killed node leaves no job stuck.
func rescueOrphans(ctx context.Context, st *store.Store, pl *pipeline, log *slog.Logger) {
	alive, err := st.AliveNodes(ctx, time.Now().Add(-30*time.Second).UnixMilli())
	if err != nil || len(alive) == 0 {
		return
	}
	n, err := pl.queue.RescueOrphans(ctx, alive, 30*time.Second)
	if err != nil && ctx.Err() == nil {
		log.Warn("JobRescueFailed", "err", err)
	} else if n > 0 {
		log.Info("JobsRescued", "count", n)
	}
}

// trackCluster records this node in the database every 10 seconds and
// tells the rate limiter how many nodes share the limits.
func trackCluster(ctx context.Context, st *store.Store, srv *api.Server, pl *pipeline, nodeID string, log *slog.Logger) {
	started := time.Now().UnixMilli()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		n, err := st.TouchNode(ctx, nodeID, started, time.Now().Add(-30*time.Second).UnixMilli())
		if err != nil && ctx.Err() == nil {
			log.Warn("NodeHeartbeatFailed", "err", err)
		} else if err == nil {
			srv.SetClusterSize(n)
			rescueOrphans(ctx, st, pl, log)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
