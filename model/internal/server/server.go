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
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
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
	Predict(ctx context.Context, input []float32) (classifier.Prediction, error)
}

// Limits bound what one request, and all of them together, may cost.
type Limits struct {
	MaxBodyBytes int64 // larger bodies get 413
	MaxPixels    int64 // larger images (by their header) get 413, before decoding
	MaxInFlight  int   // more concurrent /predict requests get 503 at once
	Workers      int   // requests decoding or inferring at the same time (CPU-bound)
}

// Server serves one Predictor. Create it with New.
type Server struct {
	model    Predictor
	limits   Limits
	log      *slog.Logger
	metrics  *metrics
	registry *prometheus.Registry
	docs     docs

	inFlight chan struct{} // admission: a token per /predict request being served
	cpu      chan struct{} // a token per request decoding or inferring

	ready    atomic.Bool // the model is loaded
	draining atomic.Bool // shutdown has begun
}

// New returns a Server for model. It starts not ready; call SetReady.
func New(model Predictor, limits Limits, logger *slog.Logger) *Server {
	limits.MaxInFlight = max(limits.MaxInFlight, 1)
	limits.Workers = max(limits.Workers, 1)
	registry := prometheus.NewRegistry()
	s := &Server{
		model:    model,
		limits:   limits,
		log:      logger,
		metrics:  newMetrics(registry),
		registry: registry,
		docs:     mustDocs(),
		inFlight: make(chan struct{}, limits.MaxInFlight),
		cpu:      make(chan struct{}, limits.Workers),
	}
	return s
}

// SetReady marks the model as loaded (or not).
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

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
	return s.instrument(s.recoverPanics(mux))
}

// errorBody is FastAPI's error shape.
type errorBody struct {
	Detail string `json:"detail"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do
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
	case !s.ready.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "model not loaded"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// predictResponse is MLEM's answer shape.
type predictResponse struct {
	Prediction    string             `json:"prediction"`
	Probabilities map[string]float32 `json:"probabilities"`
}

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) {
	// Admission first: a request that cannot be served soon is refused
	// before it costs memory.
	select {
	case s.inFlight <- struct{}{}:
		defer func() { <-s.inFlight }()
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "server is at its limit of %d concurrent predictions; retry later", s.limits.MaxInFlight)
		return
	}
	if s.draining.Load() {
		w.Header().Set("Connection", "close")
	}

	data, status, err := s.readImage(w, r)
	if err != nil {
		writeError(w, status, "%v", err)
		return
	}

	// Decoding and inference are CPU-bound: run as many as there are workers.
	ctx := r.Context()
	select {
	case s.cpu <- struct{}{}:
		defer func() { <-s.cpu }()
	case <-ctx.Done():
		writeError(w, http.StatusServiceUnavailable, "request cancelled while waiting: %v", ctx.Err())
		return
	}

	start := time.Now()
	input, err := preprocess.Tensor(data, s.limits.MaxPixels)
	s.metrics.preprocess.Observe(time.Since(start).Seconds())
	if err != nil {
		writeError(w, decodeStatus(err), "%v", err)
		return
	}
	start = time.Now()
	pred, err := s.model.Predict(ctx, input)
	s.metrics.inference.Observe(time.Since(start).Seconds())
	if err != nil {
		if ctx.Err() != nil {
			writeError(w, http.StatusServiceUnavailable, "request cancelled: %v", ctx.Err())
			return
		}
		s.log.ErrorContext(ctx, "inference failed", "err", err)
		writeError(w, http.StatusInternalServerError, "inference failed")
		return
	}
	labels := s.model.Labels()
	resp := predictResponse{Prediction: pred.Label, Probabilities: make(map[string]float32, len(labels))}
	for i, label := range labels {
		resp.Probabilities[label] = pred.Probabilities[i]
	}
	writeJSON(w, http.StatusOK, resp)
}

// decodeStatus maps a preprocessing error to its HTTP status.
func decodeStatus(err error) int {
	switch {
	case errors.Is(err, preprocess.ErrUnsupportedFormat):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, preprocess.ErrTooManyPixels):
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusBadRequest
	}
}

// readImage returns the image bytes of a multipart "file" field or of a raw
// image body, with the status to answer if that fails.
func (s *Server) readImage(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if r.ContentLength > s.limits.MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes exceeds the limit of %d bytes", r.ContentLength, s.limits.MaxBodyBytes)
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.limits.MaxBodyBytes)
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil && r.Header.Get("Content-Type") != "" {
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("malformed Content-Type %q: %v", r.Header.Get("Content-Type"), err)
	}
	var data []byte
	switch {
	case mediaType == "multipart/form-data":
		data, err = s.readMultipartFile(r)
		if errors.Is(err, errNoFileField) {
			return nil, http.StatusUnprocessableEntity, err
		}
	case strings.HasPrefix(mediaType, "image/") || mediaType == "application/octet-stream":
		data, err = io.ReadAll(r.Body)
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf(
			"unsupported Content-Type %q: send multipart/form-data with a \"file\" field, or the image itself as image/*", mediaType)
	}
	if maxErr := (*http.MaxBytesError)(nil); errors.As(err, &maxErr) {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body exceeds the limit of %d bytes", maxErr.Limit)
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading the request body: %v", err)
	}
	if len(data) == 0 {
		return nil, http.StatusBadRequest, errors.New("the image is empty")
	}
	return data, 0, nil
}

var errNoFileField = errors.New(`multipart form has no "file" field`)

// readMultipartFile streams the form and keeps only the "file" part in
// memory (never on disk: the root filesystem is read-only). Other fields
// are skipped.
func (s *Server) readMultipartFile(r *http.Request) ([]byte, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, err
	}
	for parts := 0; ; parts++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) && parts > 0 {
			return nil, errNoFileField
		}
		if err != nil {
			return nil, fmt.Errorf("malformed multipart body: %w", err)
		}
		if part.FormName() != "file" {
			if _, err := io.Copy(io.Discard, part); err != nil {
				return nil, err
			}
			continue
		}
		return io.ReadAll(part)
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
