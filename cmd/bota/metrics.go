package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/botaserver/bota/internal/jobs"
)

// queueCollector exports the job counts by state at scrape time.
type queueCollector struct {
	queue *jobs.Queue
	desc  *prometheus.Desc
}

func newQueueCollector(q *jobs.Queue) *queueCollector {
	return &queueCollector{queue: q, desc: prometheus.NewDesc("bota_jobs",
		"Jobs in the durable queue by state.", []string{"state"}, nil)}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stats, err := c.queue.Stats(ctx)
	if err != nil {
		return
	}
	for state, n := range stats {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(state))
	}
}
