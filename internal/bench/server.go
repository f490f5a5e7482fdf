package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/botaserver/bota/internal/api"
	"github.com/botaserver/bota/internal/store"
	"github.com/botaserver/bota/internal/store/postgres"
	"github.com/botaserver/bota/internal/store/sqlite"
)

// benchSecret signs URLs on every server a run starts; it is no secret.
const benchSecret = "bota-bench-secret-key-0123456789abcdef"

// process is a child process that serves HTTP on addr.
type process struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
	exited  chan struct{}
}

// URL returns the process's base URL.
func (p *process) URL() string { return "http://" + p.addr }

// api returns a client for a bota server's API.
func (s *botaServer) api(client *http.Client) *apiClient {
	return &apiClient{base: s.URL(), key: s.Key, client: client}
}

// startProcess runs binary with args, logging to logPath, and waits until
// GET /health on addr answers.
func startProcess(ctx context.Context, binary, addr, logPath string, args ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log file: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", binary, args[0], err)
	}
	p := &process{cmd: cmd, addr: addr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s %s exited during start: %s", binary, args[0], p.logTail())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		default:
		}
		resp, err := client.Get(p.URL() + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s %s not ready after 90 s: %s", binary, args[0], p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM, then SIGKILL after 30 s, and waits for the exit.
func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *process) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// memory returns the process's resident set (VmRSS) and its peak since
// start or the last resetPeak (VmHWM), in KiB.
func (p *process) memory() (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read process status: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %s: %w", line, err)
		}
		if name == "VmRSS" {
			rss = kb
		} else {
			peak = kb
		}
	}
	return rss, peak, nil
}

// resetPeak sets VmHWM to the current resident set, so that the next peak
// covers one benchmark only (Linux 4.0 and later: clear_refs value 5).
func (p *process) resetPeak() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0)
}

// project is a project and its test key.
type project struct {
	ID  string
	Key string
}

// botaServer is a running "bota serve" and the project the benchmarks use.
type botaServer struct {
	*process
	project
	DataDir string
}

// serverOptions describe a "bota serve" to start.
type serverOptions struct {
	// DatabaseURL selects PostgreSQL; empty means SQLite in DataDir.
	DatabaseURL string
	DataDir     string
	// Extra flags, such as --speech-workers.
	Extra []string
}

// startBota prepares the database (migrations and, when proj is nil, a
// project with keys) and starts "bota serve" on a free port of 127.0.0.1
// with every rate limit off.
func startBota(ctx context.Context, binary string, opts serverOptions, proj *project) (*botaServer, error) {
	if proj == nil {
		p, err := createProject(ctx, opts)
		if err != nil {
			return nil, err
		}
		proj = &p
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--addr", addr, "--data-dir", opts.DataDir, "--rate-limit=0",
		"--log-level", "warn", "--secret-key", benchSecret}
	if opts.DatabaseURL != "" {
		args = append(args, "--database-url", opts.DatabaseURL)
	}
	args = append(args, opts.Extra...)
	logPath := filepath.Join(opts.DataDir, fmt.Sprintf("bota-%d.log", time.Now().UnixNano()))
	p, err := startProcess(ctx, binary, addr, logPath, args...)
	if err != nil {
		return nil, err
	}
	return &botaServer{process: p, project: *proj, DataDir: opts.DataDir}, nil
}

// openStore opens and migrates the database a server will use.
func openStore(ctx context.Context, opts serverOptions) (*store.Store, func(), error) {
	var st *store.Store
	closeAll := func() {}
	if opts.DatabaseURL == "" {
		s, err := sqlite.Open(filepath.Join(opts.DataDir, "bota.db"))
		if err != nil {
			return nil, nil, err
		}
		st, closeAll = s, func() { s.Close() }
	} else {
		s, pool, err := postgres.Open(ctx, opts.DatabaseURL)
		if err != nil {
			return nil, nil, err
		}
		st, closeAll = s, func() { s.Close(); pool.Close() }
	}
	if err := st.Migrate(ctx); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	return st, closeAll, nil
}

// createProject creates a project in the server's database.
func createProject(ctx context.Context, opts serverOptions) (project, error) {
	st, closeStore, err := openStore(ctx, opts)
	if err != nil {
		return project{}, err
	}
	defer closeStore()
	return createProjectIn(ctx, st)
}

func createProjectIn(ctx context.Context, st *store.Store) (project, error) {
	p, _, secrets, err := api.CreateProjectWithKeys(ctx, st, "Benchmark")
	if err != nil {
		return project{}, fmt.Errorf("create project: %w", err)
	}
	return project{ID: p.ID, Key: secrets[0]}, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// heartbeatBody is what the bare baseline decodes: the fields of a device
// heartbeat, as the API reads them.
type heartbeatBody struct {
	BatteryPercent    *int     `json:"battery_percent"`
	StorageUsedMB     *int     `json:"storage_used_mb"`
	StorageTotalMB    *int     `json:"storage_total_mb"`
	SignalStrengthDBM *int     `json:"signal_strength_dbm"`
	FirmwareVersion   *string  `json:"firmware_version"`
	DeviceState       *string  `json:"device_state"`
	Pending           *int     `json:"pending_recordings"`
	ConnectionType    []string `json:"connection_type"`
}

// BareHandler is the baseline server: it decodes a heartbeat and answers
// with a small JSON object, serves GET /health, and serves any body
// stored with PUT /body on GET /body. It does no authentication and no
// database work, so it is the floor of what an HTTP server in Go costs.
func BareHandler() http.Handler {
	var mu sync.RWMutex
	var stored []byte
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("POST /v1/devices/{id}/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		var hb heartbeatBody
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&hb); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": r.PathValue("id"), "status": "bound",
			"battery_percent": hb.BatteryPercent, "last_heartbeat_at": time.Now().UTC()})
	})
	mux.HandleFunc("PUT /body", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		stored = b
		mu.Unlock()
	})
	mux.HandleFunc("GET /body", func(w http.ResponseWriter, r *http.Request) {
		mu.RLock()
		b := stored
		mu.RUnlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	return mux
}

// ServeBare runs BareHandler on addr until ctx ends. "bota bench" starts
// it as a child process, so that the baseline runs in its own process as
// the server does.
func ServeBare(ctx context.Context, addr string) error {
	srv := &http.Server{Addr: addr, Handler: BareHandler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// startBare starts the baseline server as "bota bench --serve-bare ADDR".
func startBare(ctx context.Context, binary, dir string) (*process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("bare-%d.log", time.Now().UnixNano()))
	return startProcess(ctx, binary, addr, logPath, "bench", "--serve-bare", addr)
}

// putBody stores body on a bare server for GET /body.
func putBody(ctx context.Context, base string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/body", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT /body: HTTP %d", resp.StatusCode)
	}
	return nil
}
