package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSaturateCountsRequests(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
	}))
	defer srv.Close()
	next := func(ctx context.Context, _ int64) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	}
	res := Saturate(context.Background(), NewClient(4), 4, 300*time.Millisecond, next)
	if res.Errors != 0 {
		t.Fatalf("%d errors; first: %s", res.Errors, res.FirstError)
	}
	if res.Requests == 0 || res.Requests > served.Load() {
		t.Errorf("Requests = %d, server saw %d", res.Requests, served.Load())
	}
	if res.Rate <= 0 {
		t.Errorf("Rate = %f, want > 0", res.Rate)
	}
	if !(res.P50 <= res.P99 && res.P99 <= res.Max) {
		t.Errorf("percentiles out of order: p50 %f, p99 %f, max %f", res.P50, res.P99, res.Max)
	}
}

func TestSaturateCountsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusTooManyRequests)
	}))
	defer srv.Close()
	next := func(ctx context.Context, _ int64) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	}
	res := Saturate(context.Background(), NewClient(2), 2, 100*time.Millisecond, next)
	if res.Errors == 0 || res.Errors != res.Requests {
		t.Errorf("Errors = %d of %d requests, want all", res.Errors, res.Requests)
	}
	if !strings.Contains(res.FirstError, "429") {
		t.Errorf("FirstError = %q, want the 429 status", res.FirstError)
	}
	if res.Rate != 0 {
		t.Errorf("Rate = %f, want 0 (no success)", res.Rate)
	}
}

func TestPacedKeepsRate(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
	}))
	defer srv.Close()
	next := func(ctx context.Context, _ int64) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	}
	res := Paced(context.Background(), NewClient(4), 4, 200, time.Second, next)
	if res.Errors != 0 {
		t.Fatalf("%d errors; first: %s", res.Errors, res.FirstError)
	}
	if res.Requests != 200 || served.Load() != 200 {
		t.Errorf("sent %d, served %d, want 200 at 200/s for 1 s", res.Requests, served.Load())
	}
	if res.Duration < 990*time.Millisecond {
		t.Errorf("run took %s, want about 1 s", res.Duration)
	}
}

func TestPacedCountsQueueing(t *testing.T) {
	// One worker and a 20 ms handler cannot keep up with 100 requests a
	// second: later requests wait, and their latency shows the wait.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
	}))
	defer srv.Close()
	next := func(ctx context.Context, _ int64) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	}
	res := Paced(context.Background(), NewClient(1), 1, 100, 500*time.Millisecond, next)
	if res.Max < 200 {
		t.Errorf("max latency %.1f ms, want at least 200 ms of queueing", res.Max)
	}
}

func TestHeartbeatRequestsRotate(t *testing.T) {
	next := HeartbeatRequests([]string{"http://a", "http://b"}, []string{"t1", "t2", "t3"})
	var got []string
	for seq := range int64(4) {
		req, err := next(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, req.URL.Host+" "+strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer "))
	}
	want := []string{"a t1", "b t1", "a t2", "b t2"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("requests went to %v, want %v", got, want)
	}
}

func TestBareHandlerDecodesHeartbeat(t *testing.T) {
	srv := httptest.NewServer(BareHandler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/devices/me/heartbeat", "application/json",
		bytes.NewReader(heartbeatPayload))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if body["battery_percent"] != float64(81) {
		t.Errorf("battery_percent = %v, want 81", body["battery_percent"])
	}

	bad, err := http.Post(srv.URL+"/v1/devices/me/heartbeat", "application/json",
		strings.NewReader(`{"unknown":1}`))
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown field: status %d, want 400", bad.StatusCode)
	}
}

func TestWriteWAV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "noise.wav")
	const size = 3*mib + 17
	sum, err := writeWAV(path, size)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != size {
		t.Fatalf("file has %d bytes, want %d", len(b), size)
	}
	if string(b[0:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" {
		t.Errorf("header = %q, want a RIFF WAVE header", b[:44])
	}
	if got := binary.LittleEndian.Uint32(b[40:44]); got != size-44 {
		t.Errorf("data chunk size %d, want %d", got, size-44)
	}
	if got := binary.LittleEndian.Uint32(b[24:28]); got != 16000 {
		t.Errorf("sample rate %d, want 16000", got)
	}
	if again, _ := hashReader(bytes.NewReader(b)); again != sum {
		t.Errorf("returned sha256 %s, file has %s", sum, again)
	}
}

func TestReportTable(t *testing.T) {
	r := &Report{Machine: Machine{Cores: 2, CPU: "test cpu", Commit: "abc1234"}}
	r.add(goal(Figure{Benchmark: Heartbeats, Name: "rate", Unit: "req/s", Value: 500, Baseline: "bare",
		BaselineValue: 2000, HigherIsBetter: true}, "≥ 0.5 × baseline", false))
	r.add(Figure{Benchmark: Uploads, Name: "peak", Unit: "MiB", Value: 3})
	if r.Figures[0].Ratio != 0.25 {
		t.Errorf("Ratio = %f, want 0.25", r.Figures[0].Ratio)
	}
	var out bytes.Buffer
	if err := r.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"abc1234", "0.25 (higher is better)", "NOT met", "2000 req/s (bare)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not decode: %v", err)
	}
	if len(back.Figures) != 2 || back.Figures[0].Met == nil || *back.Figures[0].Met {
		t.Errorf("decoded figures %+v", back.Figures)
	}
}

func TestRunRejectsUnknownBenchmark(t *testing.T) {
	_, err := Run(context.Background(), Config{Binary: "/bin/true", Only: []string{"nope"}})
	if err == nil || !strings.Contains(err.Error(), "unknown benchmark") {
		t.Errorf("Run with an unknown benchmark: %v", err)
	}
}

func TestInstalledPath(t *testing.T) {
	cases := []struct {
		goEnv, want string
	}{
		{"/opt/gobin\n/root/go\n", "/opt/gobin/tusd"},
		{"\n/root/go\n", "/root/go/bin/tusd"},
		{"\n/home/a/go" + string(filepath.ListSeparator) + "/srv/go\n", "/home/a/go/bin/tusd"},
		{"\n\n", ""},
		{"", ""},
	}
	for _, c := range cases {
		if got := installedPath(c.goEnv, "tusd"); got != c.want {
			t.Errorf("installedPath(%q) = %q, want %q", c.goEnv, got, c.want)
		}
	}
}
