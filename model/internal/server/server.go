// Package server is the HTTP face of the planet classifier, with the
// contract MLEM's FastAPI server had: POST /predict with a multipart "file"
// (or a raw image body) answers {"prediction": label, "probabilities":
// {label: p}}; errors answer {"detail": "..."} as FastAPI does.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/preprocess"
)

// Predictor is what the server needs of a model; *classifier.Classifier is one.
type Predictor interface {
	Labels() []string
	// Input is the preprocessing the model takes (its declaration's).
	Input() preprocess.Spec
	Predict(ctx context.Context, input []float32) (classifier.Prediction, error)
}

// Limits bound what one request, and all of them together, may cost.
type Limits struct {
	MaxBodyBytes     int64 // larger bodies get 413
	MaxBufferedBytes int64 // request bodies held in memory at once, all requests together; 503 past it
	MaxPixels        int64 // larger images (by their header) get 413, before decoding
	MaxJPEGScans     int   // JPEGs with more scans get 413 (each scan may cost a pass over the image)
	MaxInFlight      int   // requests holding their image, waiting for or using a worker; 503 past it
	Workers          int   // requests decoding or inferring at the same time (CPU-bound), each on a thread of its own
	MaxConnections   int   // open connections; more wait in the listen backlog
}

func (l Limits) preprocess() preprocess.Limits {
	return preprocess.Limits{MaxPixels: l.MaxPixels, MaxJPEGScans: l.MaxJPEGScans}
}

// loaded holds the model once it is loaded, with its labels as JSON strings
// and its input's preprocessing.
type loaded struct {
	Predictor
	quoted [][]byte
	input  preprocess.Spec
}

// Server serves one Predictor. Create it with New.
type Server struct {
	limits   Limits
	log      *slog.Logger
	metrics  *metrics
	registry *prometheus.Registry
	docs     docs

	model    atomic.Pointer[loaded] // nil until SetModel
	bodies   byteBudget             // bytes of request bodies held
	inFlight chan struct{}          // a token per request holding its image
	pool     workerPool             // decoding and inference

	// workTimeout bounds the work for one request: past the server's write
	// timeout its answer could not be written anyway. Set by Serve, to
	// 9/10 of it.
	workTimeout time.Duration
	draining    atomic.Bool // shutdown has begun

	// fingerprint names the model served (SetFingerprint): the deploy
	// check compares it with the stack's, which a label alone cannot tell.
	fingerprint string
}

// FingerprintHeader carries, on every /predict answer, the fingerprint of
// the model that gave it.
const FingerprintHeader = "X-Model-Fingerprint"

// SetFingerprint makes /predict answer with the FingerprintHeader and
// /readyz with "modelFingerprint": fp. Call it before serving.
func (s *Server) SetFingerprint(fp string) { s.fingerprint = fp }

// New returns a Server and starts its workers (Close stops them). It is
// not ready, and answers /predict with 503, until SetModel.
func New(limits Limits, logger *slog.Logger) *Server {
	limits.MaxInFlight = max(limits.MaxInFlight, 1)
	limits.Workers = max(limits.Workers, 1)
	// One body of the largest size (plus the byte that tells it is too
	// large) always fits.
	limits.MaxBufferedBytes = max(limits.MaxBufferedBytes, limits.MaxBodyBytes+1)
	if limits.MaxJPEGScans <= 0 {
		limits.MaxJPEGScans = 100
	}
	registry := prometheus.NewRegistry()
	s := &Server{
		limits:   limits,
		log:      logger,
		registry: registry,
		docs:     mustDocs(),
		bodies:   byteBudget{max: limits.MaxBufferedBytes},
		inFlight: make(chan struct{}, limits.MaxInFlight),
	}
	s.metrics = newMetrics(registry, &s.bodies)
	s.startWorkers()
	return s
}

// SetModel makes the server serve model, and ready.
func (s *Server) SetModel(model Predictor) {
	m := &loaded{Predictor: model, input: model.Input()}
	for _, label := range model.Labels() {
		q, _ := json.Marshal(label) // a string always marshals
		m.quoted = append(m.quoted, q)
	}
	s.model.Store(m)
}

// Drain turns readiness false for good and asks clients to close their
// connections, so that load balancers stop sending before the listener closes.
func (s *Server) Drain() { s.draining.Store(true) }

// Handler returns the routes, instrumented and protected against panics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /predict", s.handlePredict)
	mux.HandleFunc("GET /docs", s.handleDocs)
	mux.HandleFunc("GET /openapi.json", s.handleOpenAPI)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/docs", http.StatusFound)
	})
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	return s.instrument(s.recoverPanics(plainErrorsAsJSON(mux)))
}

// errorBody is FastAPI's error shape.
type errorBody struct {
	Detail string `json:"detail"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own types are written
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n')) // the client may be gone; nothing to do
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, errorBody{Detail: fmt.Sprintf(format, args...)})
}

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case s.draining.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
	case s.model.Load() == nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "model not loaded"})
	case s.fingerprint != "":
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "modelFingerprint": s.fingerprint})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// appendPrediction appends MLEM's answer, {"prediction": label,
// "probabilities": {label: p, ...}} (labels in the model's order), written
// directly: encoding/json would build and sort a map for every request.
func appendPrediction(b []byte, m *loaded, pred classifier.Prediction) ([]byte, bool) {
	b = append(b, `{"prediction":`...)
	best := slices.Index(m.Labels(), pred.Label)
	if best < 0 || len(pred.Probabilities) != len(m.quoted) {
		return nil, false
	}
	b = append(b, m.quoted[best]...)
	b = append(b, `,"probabilities":{`...)
	for i, p := range pred.Probabilities {
		if math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) {
			return nil, false
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.quoted[i]...)
		b = append(b, ':')
		b = strconv.AppendFloat(b, float64(p), 'g', -1, 32)
	}
	return append(b, "}}\n"...), true
}

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) {
	if s.fingerprint != "" {
		w.Header().Set(FingerprintHeader, s.fingerprint)
	}
	model := s.model.Load()
	if model == nil {
		s.refuse(w, r, &requestError{http.StatusServiceUnavailable, "the model is still loading; retry later"})
		return
	}
	if s.draining.Load() {
		w.Header().Set("Connection", "close")
	}
	ctx := r.Context()
	if s.workTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.workTimeout)
		defer cancel()
	}

	// The body is read first, holding memory from the shared byte budget
	// as it arrives: slow clients hold little and no slot, so they cannot
	// keep others out.
	data, release, rerr := s.readImage(r)
	if rerr != nil {
		s.refuse(w, r, rerr)
		return
	}
	defer release()

	select {
	case s.inFlight <- struct{}{}:
		defer func() { <-s.inFlight }()
	default:
		s.refuse(w, r, errBusy("server is at its limit of %d queued predictions; retry later", s.limits.MaxInFlight))
		return
	}
	// Decoding and inference are CPU-bound: the workers take them in
	// arrival order.
	pred, err := s.compute(ctx, model, data)
	var failed *inferenceError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "request cancelled: %v", ctx.Err())
		return
	case errors.As(err, &failed):
		s.log.ErrorContext(ctx, "inference failed", "err", failed.err)
		writeError(w, http.StatusInternalServerError, "inference failed")
		return
	default:
		writeError(w, decodeStatus(err), "%v", err)
		return
	}
	body, ok := appendPrediction(make([]byte, 0, 512), model, pred)
	if !ok {
		s.log.ErrorContext(ctx, "inference gave no valid answer", "label", pred.Label, "probabilities", pred.Probabilities)
		writeError(w, http.StatusInternalServerError, "inference failed")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// inferenceError is the model failing on a valid input: the server's fault.
type inferenceError struct{ err error }

func (e *inferenceError) Error() string { return e.err.Error() }

// predict decodes data into input and runs the model on it: the CPU-bound
// part of a request, run by a worker.
func (s *Server) predict(ctx context.Context, model *loaded, data []byte, input []float32) (classifier.Prediction, error) {
	if err := ctx.Err(); err != nil {
		return classifier.Prediction{}, err // cancelled while queued
	}
	start := time.Now()
	err := model.input.Tensor(ctx, data, s.limits.preprocess(), input)
	s.metrics.preprocess.Observe(time.Since(start).Seconds())
	if err != nil {
		return classifier.Prediction{}, err
	}
	start = time.Now()
	pred, err := model.Predict(ctx, input)
	s.metrics.inference.Observe(time.Since(start).Seconds())
	if err != nil {
		return classifier.Prediction{}, &inferenceError{err}
	}
	return pred, nil
}

// decodeStatus maps a preprocessing error to its HTTP status.
func decodeStatus(err error) int {
	switch {
	case errors.Is(err, preprocess.ErrUnsupportedFormat):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, preprocess.ErrTooManyPixels), errors.Is(err, preprocess.ErrTooManyScans):
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusBadRequest
	}
}

// recoverPanics turns a panic in a handler into a 500 so that one bad
// request can never take the process (or its connection) down with it.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "handler panic", "panic", fmt.Sprint(v), "path", r.URL.Path)
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
