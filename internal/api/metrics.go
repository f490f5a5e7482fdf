package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	registry   *prometheus.Registry
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	heartbeats *prometheus.CounterVec
	// heartbeatsByUpdate and heartbeatsByLookup are the two series of
	// heartbeats, resolved once because every heartbeat adds to one.
	heartbeatsByUpdate, heartbeatsByLookup prometheus.Counter

	// series holds the counter and histogram of each route and status,
	// keyed by routeStatus, so that a request skips the label lookup of
	// the vectors.
	series sync.Map
}

type routeStatus struct {
	route  string
	status int
}

type routeSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bota_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bota_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bota_heartbeats_total",
			Help: "Stored heartbeats by how the credential was checked: " +
				`"update" by the heartbeat's own statement, "lookup" by reading it first.`,
		}, []string{"check"}),
	}
	m.heartbeatsByUpdate = m.heartbeats.WithLabelValues("update")
	m.heartbeatsByLookup = m.heartbeats.WithLabelValues("lookup")
	m.registry.MustRegister(m.requests, m.duration, m.heartbeats,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	key := routeStatus{route, status}
	v, ok := m.series.Load(key)
	if !ok {
		v, _ = m.series.LoadOrStore(key, &routeSeries{
			requests: m.requests.WithLabelValues(route, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(route),
		})
	}
	rs := v.(*routeSeries)
	rs.requests.Inc()
	rs.duration.Observe(d.Seconds())
}

// Register adds a collector to the /metrics registry.
func (s *Server) Register(c prometheus.Collector) error { return s.metrics.registry.Register(c) }

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})
}
