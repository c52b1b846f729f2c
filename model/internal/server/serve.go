package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Timeouts are the HTTP server's timeouts and the shutdown sequence's delays.
type Timeouts struct {
	ReadHeader time.Duration
	Read       time.Duration
	Write      time.Duration
	Idle       time.Duration
	// DrainDelay is how long readiness is false, while requests are still
	// served, before the listener closes: time for Kubernetes to take the
	// pod out of its endpoints.
	DrainDelay time.Duration
	// ShutdownGrace bounds how long in-flight requests may take to finish
	// after the listener closes.
	ShutdownGrace time.Duration
}

// Serve serves on ln until ctx is done, then shuts down gracefully:
// readiness turns false first, requests keep being served for DrainDelay,
// the listener closes, in-flight requests get ShutdownGrace to finish.
// It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener, t Timeouts) error {
	// A tenth of the write timeout is left to write the answer, a 503 if
	// the work ran out of time.
	s.workTimeout = t.Write * 9 / 10
	ln = netutil.LimitListener(ln, max(s.limits.MaxConnections, 1))
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.log.InfoContext(ctx, "serving", "addr", ln.Addr().String())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	s.Drain()
	s.log.Info("shutdown: readiness is now false, draining", "drain_delay", t.DrainDelay.String())
	select {
	case <-time.After(t.DrainDelay):
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}

	s.log.Info("shutdown: closing the listener, waiting for in-flight requests", "grace", t.ShutdownGrace.String())
	graceCtx, cancel := context.WithTimeout(context.Background(), t.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(graceCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: requests still running after %s: %w", t.ShutdownGrace, err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	s.Close() // no request is left
	s.log.Info("shutdown: complete")
	return nil
}
