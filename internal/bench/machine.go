package bench

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Machine describes where a run took place.
type Machine struct {
	Cores     int    `json:"cores"`
	MemoryMiB int64  `json:"memory_mib"`
	CPU       string `json:"cpu"`
	OS        string `json:"os"`
	GoVersion string `json:"go_version"`
	// Commit is the short git commit of the binary measured, or "".
	Commit string    `json:"commit,omitempty"`
	Date   time.Time `json:"date"`
	// LoadAverage is the 1-minute load average when the run started
	// (/proc/loadavg). Figures from a machine busy with other work are
	// low by an unknown amount.
	LoadAverage float64 `json:"load_average"`
}

// DescribeMachine reads the machine's cores, memory and CPU model from
// /proc (Linux), and the commit from the binary's build information or,
// failing that, from git.
func DescribeMachine() Machine {
	m := Machine{
		Cores:     runtime.NumCPU(),
		OS:        runtime.GOOS + "/" + runtime.GOARCH,
		GoVersion: runtime.Version(),
		Date:      time.Now().UTC().Truncate(time.Second),
	}
	m.CPU = procField("/proc/cpuinfo", "model name")
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if fields := strings.Fields(string(b)); len(fields) > 0 {
			m.LoadAverage, _ = strconv.ParseFloat(fields[0], 64)
		}
	}
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		n, err := strconv.ParseInt(strings.TrimSuffix(kb, " kB"), 10, 64)
		if err == nil {
			m.MemoryMiB = n / 1024
		}
	}
	m.Commit = buildCommit()
	if m.Commit == "" {
		// A binary built without version control stamps (go run, -buildvcs=false).
		if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
			m.Commit = strings.TrimSpace(string(out))
		}
	}
	return m
}

// buildCommit returns the short commit the running binary was built from,
// with "-dirty" when the tree had uncommitted changes, or "" when the
// build recorded none.
func buildCommit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	commit, dirty := "", false
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 7:
			commit = s.Value[:7]
		case s.Key == "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if commit != "" && dirty {
		commit += "-dirty"
	}
	return commit
}

// procField returns the value of the first "name: value" line of a /proc
// file, or "".
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == name {
			return strings.TrimSpace(value)
		}
	}
	return ""
}
