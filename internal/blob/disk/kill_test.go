package disk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/blob"
	"github.com/botaserver/bota/internal/blob/disk"
)

// killHelperEnv, when set to a folder, makes the test binary run
// runKillHelper instead of the tests.
const killHelperEnv = "BOTA_DISK_KILL_HELPER_DIR"

// killHelperWritten is how much the helper writes before it stalls.
const killHelperWritten = 1 << 20

func TestMain(m *testing.M) {
	if dir := os.Getenv(killHelperEnv); dir != "" {
		runKillHelper(dir)
		return
	}
	os.Exit(m.Run())
}

// runKillHelper starts a Put of 10 MiB, prints "ready" once 1 MiB is
// written, then stalls until the parent test kills the process.
func runKillHelper(dir string) {
	s, err := disk.New(disk.Config{Dir: dir, PublicURL: "http://127.0.0.1:1", Secret: testSecret,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "disk.New:", err)
		os.Exit(2)
	}
	r := &stallingReader{remaining: killHelperWritten}
	err = s.Put(context.Background(), testKey, r, 10<<20, testType)
	fmt.Fprintln(os.Stderr, "Put returned:", err)
	os.Exit(2)
}

// stallingReader returns remaining zero bytes, then prints "ready" and
// blocks forever.
type stallingReader struct{ remaining int }

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.remaining == 0 {
		fmt.Println("ready")
		select {}
	}
	n := min(len(p), r.remaining)
	clear(p[:n])
	r.remaining -= n
	return n, nil
}

func TestKilledPutLeavesNoObject(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("stdout pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("helper printed %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("helper: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("helper did not start its Put within 30 s")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill helper: %v", err)
	}
	_ = cmd.Wait()
	_, _ = io.Copy(io.Discard, stdout)

	s, err := disk.New(disk.Config{Dir: dir, PublicURL: "http://127.0.0.1:1", Secret: testSecret,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("disk.New after the kill: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if _, err := s.Stat(ctx, testKey); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat after the kill: error = %v, want blob.ErrNotFound", err)
	}
	infos, err := s.List(ctx, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(infos) != 0 {
		t.Errorf("List after the kill = %v, want nothing", infos)
	}

	names := tempFiles(t, dir)
	if len(names) != 1 {
		t.Fatalf("temp files after the kill = %v, want the one partial upload", names)
	}
	fi, err := os.Stat(dir + "/tmp/" + names[0])
	if err != nil {
		t.Fatalf("stat temp file: %v", err)
	}
	if fi.Size() != killHelperWritten {
		t.Errorf("temp file has %d bytes, want the %d written before the kill", fi.Size(),
			killHelperWritten)
	}
	if n, err := s.SweepTemp(time.Hour); err != nil || n != 0 {
		t.Errorf("SweepTemp(1h) = %d, %v; want 0 for a fresh temp file", n, err)
	}
	if n, err := s.SweepTemp(0); err != nil || n != 1 {
		t.Errorf("SweepTemp(0) = %d, %v; want 1", n, err)
	}
	if names := tempFiles(t, dir); len(names) != 0 {
		t.Errorf("temp files after SweepTemp = %v", names)
	}
}
