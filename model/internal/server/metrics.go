package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Latency buckets from 250µs: a prediction takes well under a millisecond.
var latencyBuckets = []float64{0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

type metrics struct {
	requests   *prometheus.CounterVec   // by route and status code
	latency    *prometheus.HistogramVec // by route
	inFlight   prometheus.Gauge
	bodyBytes  prometheus.GaugeFunc
	preprocess prometheus.Histogram
	inference  prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry, bodies *byteBudget) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		bodyBytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "http_request_body_bytes_held",
			Help: "Bytes of request bodies held in memory (bounded by MAX_BUFFERED_BYTES).",
		}, func() float64 { return float64(bodies.held.Load()) }),
		preprocess: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "model_preprocess_duration_seconds",
			Help:    "Time to decode an image and turn it into the model input.",
			Buckets: latencyBuckets,
		}),
		inference: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "model_inference_duration_seconds",
			Help:    "Time to run the model on one input (onnxruntime, with softmax).",
			Buckets: latencyBuckets,
		}),
	}
	reg.MustRegister(m.requests, m.latency, m.inFlight, m.bodyBytes, m.preprocess, m.inference,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument counts and times every request. The route label is the mux
// pattern that matched (set on the request by ServeMux), never the raw path,
// so clients cannot inflate the metrics' cardinality.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
		s.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}
