package testenv

import "sync"

var (
	stopMu sync.Mutex
	stops  []func()
)

// registerStop adds f to the functions that StopAll runs. Each server this
// package starts once per process registers its shutdown here.
func registerStop(f func()) {
	stopMu.Lock()
	defer stopMu.Unlock()
	stops = append(stops, f)
}

// StopAll stops every server this package started in this process, newest
// first, and clears the list. Call it from TestMain after m.Run, because servers
// started once per process outlive any single test's t.Cleanup.
func StopAll() {
	stopMu.Lock()
	pending := stops
	stops = nil
	stopMu.Unlock()

	for i := len(pending) - 1; i >= 0; i-- {
		pending[i]()
	}
}
