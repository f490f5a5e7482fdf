package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// clusterDirPrefix starts the name of every cluster folder in the
	// temporary directory, so that stale ones can be found and removed.
	clusterDirPrefix = "bota-pg-"
	// ownerFile, inside a cluster folder, contains the id of the process
	// that started the cluster.
	ownerFile = "owner.pid"
	// clusterRole is the superuser that initdb creates. Trust authentication
	// lets it connect without a password, and the server listens on loopback
	// only.
	clusterRole = "bota"
	// startAttempts bounds retries when another process takes the free port
	// between choosing it and the server binding it.
	startAttempts = 3
)

const missingPostgresHelp = "PostgreSQL server programs (initdb, pg_ctl) not found " +
	"in /usr/lib/postgresql/*/bin or PATH; install them with " +
	"`apt-get install -y postgresql` (Debian, Ubuntu) or run scripts/deps.sh"

// StartPostgresCluster initializes and starts a throwaway PostgreSQL cluster
// in a new temporary folder, listening on a free port of 127.0.0.1, with
// fsync off. It returns a postgres:// URL of the superuser "bota" on the
// "postgres" database and a stop function, safe to call more than once, that
// shuts the server down and removes the folder. As root it runs the server
// programs as the "postgres" user, because initdb rejects root.
func StartPostgresCluster() (dbURL string, stop func(), err error) {
	binDir, err := findPostgresBin()
	if err != nil {
		return "", nil, err
	}
	runAs, err := postgresRunAs()
	if err != nil {
		return "", nil, err
	}
	removeStaleClusters(binDir, runAs)

	dir, err := makeClusterDir(runAs)
	if err != nil {
		return "", nil, err
	}
	c := &pgCluster{binDir: binDir, runAs: runAs, dir: dir}

	if err := c.initdb(); err != nil {
		c.remove()
		return "", nil, err
	}

	var startErr error
	for range startAttempts {
		dbURL, startErr = c.start()
		if startErr == nil {
			break
		}
	}
	if startErr != nil {
		c.remove()
		return "", nil, startErr
	}

	var once sync.Once
	stop = func() { once.Do(c.stop) }
	return dbURL, stop, nil
}

// pgCluster is one cluster folder. It contains the data directory data/,
// the server log, and the Unix socket.
type pgCluster struct {
	binDir string
	runAs  *user.User // nil when the programs run as the current user
	dir    string
}

func (c *pgCluster) dataDir() string { return filepath.Join(c.dir, "data") }
func (c *pgCluster) logFile() string { return filepath.Join(c.dir, "log") }

func (c *pgCluster) initdb() error {
	// The C locale and UTF8 make the cluster the same on every machine, and
	// --no-sync skips fsync calls that a throwaway cluster does not need.
	out, err := c.run(2*time.Minute, "initdb", "-D", c.dataDir(), "-A", "trust",
		"-U", clusterRole, "-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return fmt.Errorf("initdb in %s: %w\n%s", c.dir, err, tail(out, 20))
	}
	return nil
}

// start starts the server on a newly chosen free port and waits until it
// accepts a connection.
func (c *pgCluster) start() (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}

	// max_connections covers several test binaries that share one cluster,
	// each with its own connection pools. The Unix socket lives in c.dir so
	// that no other cluster on the machine collides with it.
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "+
		"-c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
		port, c.dir)
	out, err := c.run(2*time.Minute, "pg_ctl", "-D", c.dataDir(), "-l", c.logFile(),
		"-w", "-t", "90", "-o", opts, "start")
	if err != nil {
		return "", fmt.Errorf("pg_ctl start on port %d: %w\n%s\nserver log %s:\n%s",
			port, err, tail(out, 10), c.logFile(), c.logTail())
	}

	dbURL := fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres?sslmode=disable",
		clusterRole, port)
	if err := waitReady(dbURL, 30*time.Second); err != nil {
		c.stop()
		return "", fmt.Errorf("PostgreSQL on port %d: %w\nserver log %s:\n%s",
			port, err, c.logFile(), c.logTail())
	}
	return dbURL, nil
}

// stop shuts the server down, then removes the folder. A failed shutdown
// leaves the folder in place, so the log stays readable.
func (c *pgCluster) stop() {
	out, err := c.run(time.Minute, "pg_ctl", "-D", c.dataDir(), "-m", "fast", "-w", "stop")
	if err != nil && !notRunning(c.dataDir()) {
		fmt.Fprintf(os.Stderr, "testenv: pg_ctl stop in %s: %v\n%s\n", c.dir, err, tail(out, 10))
		return
	}
	c.remove()
}

func (c *pgCluster) remove() {
	if err := os.RemoveAll(c.dir); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: remove PostgreSQL folder: %v\n", err)
	}
}

func (c *pgCluster) logTail() string {
	data, err := os.ReadFile(c.logFile())
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	return tail(data, 30)
}

// run runs one PostgreSQL program from binDir, through runuser when the
// cluster belongs to another user, and returns its combined output.
func (c *pgCluster) run(timeout time.Duration, program string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	path := filepath.Join(c.binDir, program)
	var cmd *exec.Cmd
	if c.runAs != nil {
		cmd = exec.CommandContext(ctx, "runuser",
			append([]string{"-u", c.runAs.Username, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	// The server that pg_ctl start leaves running inherits this command's
	// stdout and stderr. With a pipe, reading the output would wait for the
	// server to exit, so the output goes to a file.
	outFile, err := os.CreateTemp("", "bota-pgctl-output-")
	if err != nil {
		return nil, fmt.Errorf("create output file: %w", err)
	}
	defer os.Remove(outFile.Name())
	defer outFile.Close()
	cmd.Stdout = outFile
	cmd.Stderr = outFile
	cmd.Dir = c.dir

	runErr := cmd.Run()
	out, readErr := os.ReadFile(outFile.Name())
	if runErr != nil {
		return out, fmt.Errorf("%s: %w", program, runErr)
	}
	if readErr != nil {
		return nil, fmt.Errorf("read %s output: %w", program, readErr)
	}
	return out, nil
}

// findPostgresBin returns the folder of initdb and pg_ctl: the newest
// /usr/lib/postgresql/<version>/bin (where Debian puts them, off PATH) or
// else the folder of initdb on PATH.
func findPostgresBin() (string, error) {
	dirs, err := filepath.Glob("/usr/lib/postgresql/*/bin")
	if err != nil {
		return "", fmt.Errorf("search PostgreSQL: %w", err)
	}
	slices.SortFunc(dirs, func(a, b string) int {
		return versionOf(b) - versionOf(a)
	})
	for _, dir := range dirs {
		if hasPostgresPrograms(dir) {
			return dir, nil
		}
	}

	if path, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(path)
		if hasPostgresPrograms(dir) {
			return dir, nil
		}
	}
	return "", errors.New(missingPostgresHelp)
}

// versionOf returns the major version in /usr/lib/postgresql/<version>/bin,
// or 0 when it is not a number.
func versionOf(binDir string) int {
	v, err := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	if err != nil {
		return 0
	}
	return v
}

func hasPostgresPrograms(dir string) bool {
	for _, program := range []string{"initdb", "pg_ctl", "postgres"} {
		info, err := os.Stat(filepath.Join(dir, program))
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// postgresRunAs returns the "postgres" user when this process runs as root,
// and nil otherwise.
func postgresRunAs() (*user.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, initdb needs the user \"postgres\", "+
			"which the Debian package creates (`apt-get install -y postgresql`): %w", err)
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return nil, fmt.Errorf("running as root, runuser (util-linux) is needed to "+
			"start PostgreSQL as \"postgres\": %w", err)
	}
	return u, nil
}

// makeClusterDir creates the cluster folder, owned by runAs when set. The
// folder goes under the temporary directory when runAs can reach it, else
// under /tmp, because a root-only TMPDIR would hide it from "postgres".
// The path stays short because a Unix socket path is limited to about
// 100 bytes.
func makeClusterDir(runAs *user.User) (string, error) {
	base := os.TempDir()
	if runAs != nil && !reachableByOthers(base) {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, clusterDirPrefix)
	if err != nil {
		return "", fmt.Errorf("create PostgreSQL folder: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile),
		[]byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", errors.Join(fmt.Errorf("write owner file: %w", err), os.RemoveAll(dir))
	}
	if runAs != nil {
		uid, err := strconv.Atoi(runAs.Uid)
		if err != nil {
			return "", errors.Join(fmt.Errorf("uid %q: %w", runAs.Uid, err), os.RemoveAll(dir))
		}
		gid, err := strconv.Atoi(runAs.Gid)
		if err != nil {
			return "", errors.Join(fmt.Errorf("gid %q: %w", runAs.Gid, err), os.RemoveAll(dir))
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", errors.Join(fmt.Errorf("chown PostgreSQL folder: %w", err),
				os.RemoveAll(dir))
		}
	}
	return dir, nil
}

// reachableByOthers reports whether every folder from dir up to / lets
// other users pass through.
func reachableByOthers(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		info, err := os.Stat(dir)
		if err != nil || info.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// removeStaleClusters stops and removes cluster folders left by processes
// that no longer exist, such as a test binary killed by its -timeout, which
// never runs StopAll. Failures are ignored: a stale folder costs disk space,
// not correctness.
func removeStaleClusters(binDir string, runAs *user.User) {
	bases := []string{os.TempDir()}
	if runAs != nil && os.TempDir() != "/tmp" {
		bases = append(bases, "/tmp")
	}
	for _, base := range bases {
		dirs, err := filepath.Glob(filepath.Join(base, clusterDirPrefix+"*"))
		if err != nil {
			continue
		}
		for _, dir := range dirs {
			data, err := os.ReadFile(filepath.Join(dir, ownerFile))
			if err != nil {
				continue
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil || processExists(pid) {
				continue
			}
			c := &pgCluster{binDir: binDir, runAs: runAs, dir: dir}
			c.stop()
		}
	}
}

// processExists reports whether pid names a live process. EPERM means the
// process exists but belongs to another user.
func processExists(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// notRunning reports whether the data directory has no postmaster.pid, which
// the server removes on a clean shutdown.
func notRunning(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "postmaster.pid"))
	return errors.Is(err, os.ErrNotExist)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// waitReady connects until the server returns the result of a query or
// timeout passes. pg_ctl -w already waits, so this usually succeeds on the
// first try, but it also catches another server that took the port.
func waitReady(dbURL string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := pingOnce(ctx, dbURL)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func pingOnce(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	var one int
	queryErr := conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	return errors.Join(queryErr, conn.Close(ctx))
}

// tail returns the last n lines of out.
func tail(out []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(out, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
