package api_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/botaserver/bota/internal/apitest"
)

// BenchmarkHeartbeat serves device heartbeats on SQLite through the
// handler, without a network, from parallel clients with their own
// devices: the server's own cost per heartbeat and its allocations.
func BenchmarkHeartbeat(b *testing.B) {
	env := apitest.New(b, apitest.SQLite(), apitest.WithLogLevel(slog.LevelInfo))
	const devices = 64
	tokens := make(chan string, devices)
	for range devices {
		tokens <- env.NewBoundDevice().Token
	}
	handler := env.Server.Handler()
	const body = `{"battery_percent":87,"storage_used_mb":1200,"storage_total_mb":32000,` +
		`"signal_strength_dbm":-70,"device_state":"recording","pending_recordings":2,"connection_type":["wifi"]}`

	b.ReportAllocs()
	b.SetParallelism(devices / 2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		token := <-tokens
		for pb.Next() {
			req := httptest.NewRequest("POST", "/v1/devices/me/heartbeat", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("heartbeat: status %d, body %s", rec.Code, rec.Body)
			}
		}
	})
}
