// Package faultproxy is a TCP proxy on 127.0.0.1 that makes a link behave
// like a flaky cellular connection: it adds latency, throttles bandwidth
// and cuts connections after a random number of bytes. Tests put it
// between a client and a server to check that uploads survive such links.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Faults are the faults injected on new connections. The zero value
// forwards bytes unchanged.
type Faults struct {
	// Latency delays every chunk of bytes by this much in each direction,
	// without lowering throughput: a round trip gains twice Latency.
	Latency time.Duration
	// Jitter adds a uniform random delay in [0, Jitter) to each chunk.
	// Chunks still arrive in order.
	Jitter time.Duration
	// BytesPerSecond caps each direction of each connection. 0 means no
	// cap.
	BytesPerSecond int64
	// CutProbability is the chance, from 0 to 1, that a new connection is
	// cut. A cut connection is reset after a uniform random number of
	// bytes in [1, CutAfterMax], counted over both directions.
	CutProbability float64
	// CutAfterMax bounds the bytes a cut connection carries. Default 1 MiB.
	CutAfterMax int64
}

// Stats counts what the proxy did since it started.
type Stats struct {
	Connections int64
	// Cuts counts connections reset by the proxy, not closed by a peer.
	Cuts int64
	// BytesUp counts bytes sent from clients to the target.
	BytesUp int64
	// BytesDown counts bytes sent from the target to clients.
	BytesDown int64
}

// chunkSize is the largest read forwarded as one chunk. Small chunks keep
// throttling smooth and let cuts land in the middle of a request body.
const chunkSize = 16 << 10

// Proxy forwards connections from its listener to a target address.
type Proxy struct {
	target string
	ln     net.Listener
	log    *slog.Logger

	mu     sync.Mutex
	faults Faults
	conns  map[net.Conn]struct{}
	closed bool

	wg          sync.WaitGroup
	connections atomic.Int64
	cuts        atomic.Int64
	bytesUp     atomic.Int64
	bytesDown   atomic.Int64
}

// Start listens on a free port of 127.0.0.1 and forwards every connection
// to target (host:port) with faults applied. log may be nil.
func Start(target string, faults Faults, log *slog.Logger) (*Proxy, error) {
	if err := faults.validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{target: target, ln: ln, log: log, faults: faults, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

func (f Faults) validate() error {
	switch {
	case f.Latency < 0 || f.Jitter < 0:
		return fmt.Errorf("faultproxy: latency and jitter must not be negative; got %s and %s",
			f.Latency, f.Jitter)
	case f.BytesPerSecond < 0:
		return fmt.Errorf("faultproxy: bytes per second must not be negative; got %d", f.BytesPerSecond)
	case f.CutProbability < 0 || f.CutProbability > 1:
		return fmt.Errorf("faultproxy: cut probability must be in [0, 1]; got %g", f.CutProbability)
	case f.CutAfterMax < 0:
		return fmt.Errorf("faultproxy: cut-after maximum must not be negative; got %d", f.CutAfterMax)
	}
	return nil
}

// Addr returns the proxy's listen address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns "http://" followed by Addr.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// SetFaults changes the faults of connections accepted from now on.
// Open connections keep the faults they started with.
func (p *Proxy) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
	return nil
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Connections: p.connections.Load(),
		Cuts:        p.cuts.Load(),
		BytesUp:     p.bytesUp.Load(),
		BytesDown:   p.bytesDown.Load(),
	}
}

// Close stops accepting, closes every open connection and waits for the
// forwarding goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Warn("ProxyAcceptFailed", "err", err)
			}
			return
		}
		p.mu.Lock()
		faults := p.faults
		p.mu.Unlock()
		p.connections.Add(1)
		p.wg.Go(func() { p.serve(client, faults) })
	}
}

// track adds c to the open connections, or reports false when the proxy
// is closing.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// serve forwards one client connection until either side closes or the
// connection's cut point is reached.
func (p *Proxy) serve(client net.Conn, f Faults) {
	defer client.Close()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)

	server, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		// The client sees its connection closed, as it would when a
		// cellular link drops before reaching the server.
		p.log.Debug("ProxyDialFailed", "target", p.target, "err", err)
		resetOnClose(client)
		return
	}
	defer server.Close()
	if !p.track(server) {
		return
	}
	defer p.untrack(server)

	budget := &cutBudget{left: -1}
	if f.CutProbability > 0 && mathrand.Float64() < f.CutProbability {
		maxBytes := f.CutAfterMax
		if maxBytes == 0 {
			maxBytes = 1 << 20
		}
		budget.left = 1 + mathrand.Int64N(maxBytes)
	}

	var wg sync.WaitGroup
	var once sync.Once
	forward := func(dst, src net.Conn, counter *atomic.Int64) {
		if !p.pipe(dst, src, f, budget, counter) {
			return
		}
		// A cut resets both sides at once, which also ends the other
		// direction's pipe.
		once.Do(func() {
			p.cuts.Add(1)
			resetOnClose(client)
			resetOnClose(server)
			client.Close()
			server.Close()
		})
	}
	wg.Go(func() { forward(server, client, &p.bytesUp) })
	wg.Go(func() { forward(client, server, &p.bytesDown) })
	wg.Wait()
}

// resetOnClose makes Close send a TCP reset instead of a FIN, which is
// what a peer sees when a mobile link dies.
func resetOnClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}

// cutBudget is the number of bytes a connection may still carry over both
// directions; left < 0 means no limit.
type cutBudget struct {
	mu   sync.Mutex
	left int64
}

// take grants up to n bytes and reports whether the budget ran out.
func (b *cutBudget) take(n int) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left < 0 {
		return n, false
	}
	if int64(n) < b.left {
		b.left -= int64(n)
		return n, false
	}
	granted := int(b.left)
	b.left = 0
	return granted, true
}

// chunk is bytes read from one side, due for writing at a time.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst with the faults applied, and reports whether it
// stopped because the connection's cut point was reached.
func (p *Proxy) pipe(dst, src net.Conn, f Faults, budget *cutBudget, counter *atomic.Int64) bool {
	// A reader goroutine stamps each chunk with its due time and a writer
	// sends it then, so latency delays bytes without capping throughput.
	// The channel's capacity bounds the bytes in flight.
	chunks := make(chan chunk, 64)
	cutReached := make(chan bool, 1)
	go func() {
		defer close(chunks)
		cutHit := false
		defer func() { cutReached <- cutHit }()
		var lastDue time.Time
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			if n > 0 {
				granted, hit := budget.take(n)
				due := time.Now().Add(f.Latency)
				if f.Jitter > 0 {
					due = due.Add(mathrand.N(f.Jitter))
				}
				if due.Before(lastDue) {
					due = lastDue
				}
				lastDue = due
				if granted > 0 {
					chunks <- chunk{data: buf[:granted], due: due}
				}
				if hit {
					cutHit = true
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()

	start := time.Now()
	var sent int64
	for c := range chunks {
		if wait := time.Until(c.due); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := dst.Write(c.data); err != nil {
			// The reader may be blocked on a full channel: drain it so
			// that closing src lets it end.
			src.Close()
			for range chunks {
			}
			break
		}
		sent += int64(len(c.data))
		counter.Add(int64(len(c.data)))
		if f.BytesPerSecond > 0 {
			// Sleep until the bytes sent so far fit the rate.
			target := start.Add(time.Duration(float64(sent) / float64(f.BytesPerSecond) * float64(time.Second)))
			if wait := time.Until(target); wait > 0 {
				time.Sleep(wait)
			}
		}
	}
	if <-cutReached {
		// No FIN: the caller resets the connection, and a FIN first would
		// let the peer read a clean end of stream.
		return true
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	return false
}

var _ io.Closer = (*Proxy)(nil)
