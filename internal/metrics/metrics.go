// Package metrics defines herd's Prometheus metrics. They live in a struct
// registered on a passed-in Registerer: no globals. Gauges that mirror the
// database (jobs by state, queue depth) are read from the store at scrape time.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// Metrics are the server's and workers' instruments.
type Metrics struct {
	TaskDuration *prometheus.HistogramVec
	EncodeSpeed  prometheus.Histogram
	LeaseExpired prometheus.Counter
	HTTPDuration *prometheus.HistogramVec
}

// NewRegistry returns a registry with the Go and process collectors and
// herd's metrics registered on it: what both `herd serve` and `herd worker` expose.
func NewRegistry() (*prometheus.Registry, *Metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, New(reg)
}

// New registers herd's metrics on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		TaskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_task_duration_seconds",
			Help:    "How long tasks ran, by kind and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 12),
		}, []string{"kind", "outcome"}),
		EncodeSpeed: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herd_encode_speed_ratio",
			Help:    "Encode speed of finished encode tasks, as a multiple of real time.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32},
		}),
		LeaseExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_lease_expiries_total",
			Help: "Tasks requeued because their worker stopped answering.",
		}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern, method and status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method", "code"}),
	}
	reg.MustRegister(m.TaskDuration, m.EncodeSpeed, m.LeaseExpired, m.HTTPDuration)
	return m
}

// TaskFinished implements worker.Observer.
func (m *Metrics) TaskFinished(kind job.Kind, outcome string, d time.Duration, speed float64) {
	m.TaskDuration.WithLabelValues(string(kind), outcome).Observe(d.Seconds())
	if kind.Encodes() && outcome == "succeeded" && speed > 0 {
		m.EncodeSpeed.Observe(speed)
	}
}

// Reaped counts expired leases.
func (m *Metrics) Reaped(n int) { m.LeaseExpired.Add(float64(n)) }

// Instrument wraps an HTTP handler with latency by route pattern (never by path: no ids as labels).
func (m *Metrics) Instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.HTTPDuration.WithLabelValues(route, r.Method, strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// StatsStore is what the collector needs from the store: its numbers.
type StatsStore interface {
	Stats(ctx context.Context) (store.Stats, error)
}

// StoreCollector reads queue gauges from the store at scrape time.
type StoreCollector struct {
	st  StatsStore
	log *slog.Logger
	// The last numbers read, reused for statsFresh: /metrics is public, so
	// a flood of scrapes costs one set of store queries per statsFresh.
	mu      sync.Mutex
	last    store.Stats
	lastAt  time.Time
	jobs    *prometheus.Desc
	queue   *prometheus.Desc
	running *prometheus.Desc
	backlog *prometheus.Desc
}

// NewStoreCollector returns a collector to register next to Metrics.
func NewStoreCollector(st StatsStore, log *slog.Logger) *StoreCollector {
	return &StoreCollector{
		st:      st,
		log:     log,
		jobs:    prometheus.NewDesc("herd_jobs", "Jobs by state.", []string{"state"}, nil),
		queue:   prometheus.NewDesc("herd_queue_depth", "Queued tasks waiting for a worker, by profile.", []string{"profile"}, nil),
		running: prometheus.NewDesc("herd_tasks_running", "Tasks being run now.", nil, nil),
		backlog: prometheus.NewDesc("herd_encode_backlog_seconds", "Seconds of source video still to encode (what worker autoscaling follows).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *StoreCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.queue
	ch <- c.running
	ch <- c.backlog
}

// statsFresh is how long the store's numbers are reused between scrapes.
const statsFresh = 5 * time.Second

// stats returns the store's numbers, read at most once per statsFresh;
// scrapes that come while they are read wait and share them.
func (c *StoreCollector) stats() (store.Stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.lastAt.IsZero() && time.Since(c.lastAt) < statsFresh {
		return c.last, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.st.Stats(ctx)
	if err != nil {
		return st, err
	}
	c.last, c.lastAt = st, time.Now()
	return st, nil
}

// Collect implements prometheus.Collector.
func (c *StoreCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.stats()
	if err != nil {
		c.log.Error("collect queue metrics", "err", err)
		return
	}
	for _, s := range []job.State{job.Queued, job.Running, job.Succeeded, job.Failed, job.Canceled} {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(st.JobsByState[s]), string(s))
	}
	for p, n := range st.QueueByProfile {
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(n), p)
	}
	ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(st.RunningTasks))
	ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, st.EncodeBacklog)
}
