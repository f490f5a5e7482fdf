package faultproxy_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/botaserver/bota/internal/faultproxy"
)

// startEcho runs a TCP server that sends back every byte it reads.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startProxy(t *testing.T, target string, f faultproxy.Faults) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(target, f, nil)
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// echoThrough sends payload through the proxy, half-closes, and returns
// what came back and how long it took.
func echoThrough(t *testing.T, addr string, payload []byte) ([]byte, time.Duration, error) {
	t.Helper()
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		// A reset can arrive before the dial returns.
		return nil, time.Since(start), err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	writeErr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		writeErr <- err
	}()
	got, readErr := io.ReadAll(c)
	if err := <-writeErr; err != nil && readErr == nil {
		readErr = err
	}
	return got, time.Since(start), readErr
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random bytes: %v", err)
	}
	return b
}

func TestProxyForwardsUnchanged(t *testing.T) {
	p := startProxy(t, startEcho(t), faultproxy.Faults{})
	payload := randomBytes(t, 3<<20)

	got, _, err := echoThrough(t, p.Addr(), payload)
	if err != nil {
		t.Fatalf("echo through proxy: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo returned %d bytes that differ from the %d sent", len(got), len(payload))
	}
	st := p.Stats()
	if st.BytesUp != int64(len(payload)) {
		t.Errorf("BytesUp = %d, want %d", st.BytesUp, len(payload))
	}
	if st.BytesDown != int64(len(payload)) {
		t.Errorf("BytesDown = %d, want %d", st.BytesDown, len(payload))
	}
	if st.Connections != 1 {
		t.Errorf("Connections = %d, want 1", st.Connections)
	}
	if st.Cuts != 0 {
		t.Errorf("Cuts = %d, want 0", st.Cuts)
	}
}

func TestProxyAddsLatency(t *testing.T) {
	const latency = 150 * time.Millisecond
	p := startProxy(t, startEcho(t), faultproxy.Faults{Latency: latency})

	got, took, err := echoThrough(t, p.Addr(), []byte("ping"))
	if err != nil {
		t.Fatalf("echo through proxy: %v", err)
	}
	if string(got) != "ping" {
		t.Fatalf("echo = %q, want %q", got, "ping")
	}
	// Latency applies once per direction.
	if took < 2*latency {
		t.Errorf("round trip took %s, want at least %s", took, 2*latency)
	}
	if took > 2*latency+2*time.Second {
		t.Errorf("round trip took %s, far more than %s", took, 2*latency)
	}
}

func TestProxyLatencyKeepsThroughput(t *testing.T) {
	// 4 MiB in 16 KiB chunks is 256 chunks: if each chunk waited the full
	// latency in turn, the copy would take more than 25 s.
	p := startProxy(t, startEcho(t), faultproxy.Faults{Latency: 100 * time.Millisecond})
	payload := randomBytes(t, 4<<20)

	got, took, err := echoThrough(t, p.Addr(), payload)
	if err != nil {
		t.Fatalf("echo through proxy: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo returned %d bytes that differ from the %d sent", len(got), len(payload))
	}
	if took > 5*time.Second {
		t.Errorf("4 MiB with 100 ms latency took %s, want well under 5 s", took)
	}
}

func TestProxyThrottles(t *testing.T) {
	const rate = 1 << 20 // 1 MiB/s
	p := startProxy(t, startEcho(t), faultproxy.Faults{BytesPerSecond: rate})
	payload := randomBytes(t, 512<<10)

	got, took, err := echoThrough(t, p.Addr(), payload)
	if err != nil {
		t.Fatalf("echo through proxy: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo returned %d bytes that differ from the %d sent", len(got), len(payload))
	}
	// Both directions are capped but run at the same time, so 512 KiB
	// takes at least half a second.
	if took < 450*time.Millisecond {
		t.Errorf("512 KiB at 1 MiB/s took %s, want at least 450 ms", took)
	}
	if took > 5*time.Second {
		t.Errorf("512 KiB at 1 MiB/s took %s, want under 5 s", took)
	}
}

func TestProxyCutsConnection(t *testing.T) {
	const cutAfter = 64 << 10
	p := startProxy(t, startEcho(t), faultproxy.Faults{CutProbability: 1, CutAfterMax: cutAfter})
	payload := randomBytes(t, 4<<20)

	got, _, err := echoThrough(t, p.Addr(), payload)
	if err == nil {
		t.Fatalf("echo of %d bytes through a cut connection succeeded with %d bytes back",
			len(payload), len(got))
	}
	if len(got) > cutAfter {
		t.Errorf("received %d bytes, want at most the cut point %d", len(got), cutAfter)
	}
	st := p.Stats()
	if st.Cuts != 1 {
		t.Errorf("Cuts = %d, want 1", st.Cuts)
	}
	if st.BytesUp+st.BytesDown > cutAfter {
		t.Errorf("forwarded %d bytes, want at most %d", st.BytesUp+st.BytesDown, cutAfter)
	}
}

func TestProxyCutProbability(t *testing.T) {
	p := startProxy(t, startEcho(t), faultproxy.Faults{CutProbability: 0.5, CutAfterMax: 1024})
	payload := randomBytes(t, 64<<10)

	const tries = 60
	failed := 0
	for range tries {
		got, _, err := echoThrough(t, p.Addr(), payload)
		if err != nil || !bytes.Equal(got, payload) {
			failed++
		}
	}
	// With p = 0.5 over 60 tries, fewer than 10 or more than 50 cuts has
	// a probability below 1e-7.
	if failed < 10 || failed > 50 {
		t.Errorf("%d of %d connections failed, want about half", failed, tries)
	}
	if got := p.Stats().Cuts; got != int64(failed) {
		t.Errorf("Cuts = %d, want %d (the failed connections)", got, failed)
	}
}

func TestProxySetFaults(t *testing.T) {
	p := startProxy(t, startEcho(t), faultproxy.Faults{CutProbability: 1, CutAfterMax: 10})
	if err := p.SetFaults(faultproxy.Faults{}); err != nil {
		t.Fatalf("SetFaults: %v", err)
	}
	payload := randomBytes(t, 100<<10)
	got, _, err := echoThrough(t, p.Addr(), payload)
	if err != nil {
		t.Fatalf("echo after faults were cleared: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("echo returned %d bytes that differ from the %d sent", len(got), len(payload))
	}
}

func TestProxyRejectsInvalidFaults(t *testing.T) {
	cases := map[string]faultproxy.Faults{
		"negative latency":     {Latency: -time.Second},
		"negative jitter":      {Jitter: -time.Second},
		"negative rate":        {BytesPerSecond: -1},
		"probability above 1":  {CutProbability: 1.5},
		"negative probability": {CutProbability: -0.1},
		"negative cut point":   {CutAfterMax: -1},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := faultproxy.Start("127.0.0.1:1", f, nil)
			if err == nil {
				p.Close()
				t.Fatalf("Start accepted %+v", f)
			}
			if !strings.HasPrefix(err.Error(), "faultproxy: ") {
				t.Errorf("error %q does not name the package", err)
			}
		})
	}
}

func TestProxyTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	target := ln.Addr().String()
	ln.Close()
	p := startProxy(t, target, faultproxy.Faults{})

	_, _, err = echoThrough(t, p.Addr(), []byte("hello"))
	if err == nil {
		t.Fatal("echo through a proxy whose target is down succeeded")
	}
}

func TestProxyHTTPRequests(t *testing.T) {
	body := strings.Repeat("bota ", 50_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Received", http.StatusText(http.StatusOK))
		_, _ = io.WriteString(w, body[:min(int(n), len(body))])
	}))
	t.Cleanup(srv.Close)
	p := startProxy(t, strings.TrimPrefix(srv.URL, "http://"),
		faultproxy.Faults{Latency: 5 * time.Millisecond, BytesPerSecond: 20 << 20})

	client := &http.Client{Timeout: 10 * time.Second}
	for i := range 5 {
		resp, err := client.Post(p.URL()+"/upload", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d: read body: %v", i, err)
		}
		if len(got) != len(body) {
			t.Errorf("request %d: body has %d bytes, want %d", i, len(got), len(body))
		}
	}
	// Keep-alive reuses one connection for the five requests.
	if got := p.Stats().Connections; got != 1 {
		t.Errorf("Connections = %d, want 1 (keep-alive)", got)
	}
}

func TestProxyCloseEndsOpenConnections(t *testing.T) {
	p, err := faultproxy.Start(startEcho(t), faultproxy.Faults{}, nil)
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5 s with a connection open")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err == nil || errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close = %v, want EOF or reset from the proxy", err)
	}
}
