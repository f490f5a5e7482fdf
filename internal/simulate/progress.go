package simulate

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progressBarWidth is the number of cells in the terminal progress bar.
const progressBarWidth = 24

// Progress reports a run's progress on a writer: a single line redrawn in
// place on a terminal, or one line per interval otherwise. It is also an
// io.Writer for log output, so that log lines do not tear the bar.
type Progress struct {
	w        io.Writer
	terminal bool
	interval time.Duration

	mu    sync.Mutex
	stats *collector
	total int
	start time.Time
	drawn bool
	done  chan struct{}
	wg    sync.WaitGroup
}

// NewProgress returns a Progress that writes to w. With terminal set it
// redraws one line every 200 ms; otherwise it writes a line every
// interval (5 s when interval is 0).
func NewProgress(w io.Writer, terminal bool, interval time.Duration) *Progress {
	switch {
	case terminal:
		interval = 200 * time.Millisecond
	case interval <= 0:
		interval = 5 * time.Second
	}
	return &Progress{w: w, terminal: terminal, interval: interval}
}

// Write writes a log line above the progress bar.
func (p *Progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal && p.drawn {
		io.WriteString(p.w, "\r\x1b[K")
	}
	n, err := p.w.Write(b)
	if p.terminal && p.drawn {
		io.WriteString(p.w, p.line())
	}
	return n, err
}

func (p *Progress) begin(stats *collector, total int) {
	p.mu.Lock()
	p.stats, p.total, p.start = stats, total, time.Now()
	p.done = make(chan struct{})
	p.mu.Unlock()
	p.wg.Go(func() {
		tick := time.NewTicker(p.interval)
		defer tick.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-tick.C:
				p.draw()
			}
		}
	})
}

// end draws the final state and leaves the cursor on a fresh line.
func (p *Progress) end() {
	close(p.done)
	p.wg.Wait()
	p.draw()
	if p.terminal {
		p.mu.Lock()
		io.WriteString(p.w, "\n")
		p.drawn = false
		p.mu.Unlock()
	}
}

func (p *Progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		io.WriteString(p.w, "\r\x1b[K"+p.line())
		p.drawn = true
		return
	}
	io.WriteString(p.w, p.line()+"\n")
}

// line renders the current counters; p.mu must be held.
func (p *Progress) line() string {
	done := int(p.stats.uploadsDone.Load())
	failed := int(p.stats.uploadsFailed.Load())
	bytes := p.stats.bytes.Load()
	elapsed := time.Since(p.start)
	secs := max(elapsed.Seconds(), 0.001)
	text := fmt.Sprintf("uploads %d/%d  failed %d  %.1f MiB  errors %d  %.1f uploads/s  %.2f MiB/s  %s",
		done, p.total, failed, float64(bytes)/(1<<20), p.stats.errors.Load(),
		float64(done)/secs, float64(bytes)/(1<<20)/secs, elapsed.Truncate(time.Second))
	if !p.terminal {
		return "simulate: " + text
	}
	filled := 0
	if p.total > 0 {
		filled = (done + failed) * progressBarWidth / p.total
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", progressBarWidth-filled) + "] " + text
}
