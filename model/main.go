// Command model serves the planet classifier over HTTP (see README.md).
//
// Configuration comes from flags, whose defaults come from the environment
// variables of the same name in upper case (PORT, MODEL_PATH, ...), so the
// Kubernetes Deployment can set either.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/server"
)

// config is everything the server can be told.
type config struct {
	host           string
	port           int
	modelPath      string
	onnxruntimeLib string
	limits         server.Limits
	timeouts       server.Timeouts
	logLevel       slog.Level
}

// Defaults match the image layout (Dockerfile).
const (
	defaultModelPath = "/model/planets.onnx"
	defaultLib       = "/model/libonnxruntime.so.1"
)

func parseConfig(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("model", flag.ContinueOnError)
	var errs []error
	envInt := func(name string, def int64) int64 {
		if v := getenv(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
			return n
		}
		return def
	}
	envDuration := func(name string, def time.Duration) time.Duration {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
			return d
		}
		return def
	}
	envString := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.host, "host", envString("HOST", ""), "address to listen on; empty means all interfaces (env HOST)")
	fs.IntVar(&c.port, "port", int(envInt("PORT", 8080)), "TCP port to listen on, all interfaces (env PORT)")
	fs.StringVar(&c.modelPath, "model-path", envString("MODEL_PATH", defaultModelPath), "ONNX model file, with a \"labels\" metadata entry (env MODEL_PATH)")
	fs.StringVar(&c.onnxruntimeLib, "onnxruntime-lib", envString("ONNXRUNTIME_LIB", defaultLib), "onnxruntime shared library (env ONNXRUNTIME_LIB)")
	fs.Int64Var(&c.limits.MaxBodyBytes, "max-body-bytes", envInt("MAX_BODY_BYTES", 10<<20), "largest request body; larger get 413 (env MAX_BODY_BYTES)")
	fs.Int64Var(&c.limits.MaxPixels, "max-pixels", envInt("MAX_PIXELS", 4096*1024), "largest image in pixels, checked before decoding; larger get 413 (env MAX_PIXELS)")
	fs.IntVar(&c.limits.MaxInFlight, "max-inflight", int(envInt("MAX_INFLIGHT", 64)), "concurrent /predict requests; more get 503 (env MAX_INFLIGHT)")
	fs.IntVar(&c.limits.Workers, "workers", int(envInt("WORKERS", int64(runtime.GOMAXPROCS(0)))), "requests decoding or inferring at once, and onnxruntime sessions (env WORKERS; default GOMAXPROCS)")
	fs.DurationVar(&c.timeouts.ReadHeader, "read-header-timeout", envDuration("READ_HEADER_TIMEOUT", 5*time.Second), "env READ_HEADER_TIMEOUT")
	fs.DurationVar(&c.timeouts.Read, "read-timeout", envDuration("READ_TIMEOUT", 15*time.Second), "whole request read (env READ_TIMEOUT)")
	fs.DurationVar(&c.timeouts.Write, "write-timeout", envDuration("WRITE_TIMEOUT", 15*time.Second), "env WRITE_TIMEOUT")
	fs.DurationVar(&c.timeouts.Idle, "idle-timeout", envDuration("IDLE_TIMEOUT", 60*time.Second), "keep-alive idle (env IDLE_TIMEOUT)")
	fs.DurationVar(&c.timeouts.DrainDelay, "drain-delay", envDuration("DRAIN_DELAY", 5*time.Second), "after SIGTERM: not ready but still serving, before closing the listener (env DRAIN_DELAY)")
	fs.DurationVar(&c.timeouts.ShutdownGrace, "shutdown-grace", envDuration("SHUTDOWN_GRACE", 20*time.Second), "then: time for in-flight requests to finish (env SHUTDOWN_GRACE)")
	logLevel := fs.String("log-level", envString("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := c.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("log level: %w", err))
	}
	if c.port < 0 || c.port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", c.port))
	}
	if c.limits.MaxBodyBytes <= 0 || c.limits.MaxPixels <= 0 || c.limits.MaxInFlight <= 0 || c.limits.Workers <= 0 {
		errs = append(errs, errors.New("limits must be positive"))
	}
	return c, errors.Join(errs...)
}

func main() {
	started := time.Now()
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg, logger, started); err != nil {
		logger.Error("exiting", "err", err)
		os.Exit(1)
	}
}

// run listens first, so that a taken port fails before the slower model
// load, then loads the model and serves, ready.
func run(ctx context.Context, cfg config, logger *slog.Logger, started time.Time) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.host, strconv.Itoa(cfg.port)))
	if err != nil {
		return err
	}
	if err := classifier.InitRuntime(cfg.onnxruntimeLib); err != nil {
		ln.Close()
		return err
	}
	model, err := classifier.Load(cfg.modelPath, cfg.limits.Workers)
	if err != nil {
		ln.Close()
		return err
	}
	srv := server.New(model, cfg.limits, logger)
	srv.SetReady(true)
	logger.Info("model loaded", "model", cfg.modelPath, "labels", model.Labels(),
		"onnxruntime", classifier.RuntimeVersion(), "workers", cfg.limits.Workers,
		"startup_ms", float64(time.Since(started).Microseconds())/1000)
	if err := srv.Serve(ctx, ln, cfg.timeouts); err != nil {
		// Handlers may still be running (the grace period ran out): leave
		// the sessions to the process exit rather than free them under them.
		return err
	}
	return model.Close()
}
