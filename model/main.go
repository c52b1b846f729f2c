// Command model serves the planet classifier over HTTP (see README.md).
// `model package ...` packages a user's own model instead (internal/pack,
// docs/bring-your-own-model.md).
//
// Configuration comes from flags, whose defaults come from the environment
// variables of the same name in upper case (PORT, MODEL_PATH, ...), so the
// Kubernetes Deployment can set either.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/evaluate"
	"github.com/planets-mlops/deploy/model/internal/pack"
	"github.com/planets-mlops/deploy/model/internal/preprocess"
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
	// fingerprint names the model served (MODEL_FINGERPRINT, set by the
	// Deployment): /readyz and /predict report it.
	fingerprint string
	// check, with reportPath and evalDir: check the model and exit (-check).
	check      bool
	reportPath string
	evalDir    string
	// goMemoryLimit, when positive, is the Go runtime's soft memory limit
	// derived from the container's (GOMEMLIMIT unset).
	goMemoryLimit int64
}

// Defaults match the image layout (Dockerfile).
const (
	defaultModelPath = "/model/planets.onnx"
	defaultLib       = "/model/libonnxruntime.so.1"
	defaultReport    = "/model/report.json"
	defaultEvalDir   = "/model/eval"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// memoryBaseline is what the process holds besides request bodies and
// decodes: the Go runtime, onnxruntime and its sessions, connections'
// buffers (measured: about 45 MiB under load), with room to spare.
const memoryBaseline = 96 * mib

// parseConfig reads the settings; every one has a range, and an error names
// the setting, its value and the range. memoryLimit is the container's
// memory limit in bytes (0: none).
func parseConfig(args []string, getenv func(string) string, memoryLimit int64) (config, error) {
	var c config
	fs := flag.NewFlagSet("model", flag.ContinueOnError)
	var errs []error
	envInt := func(name string, def int64) int64 {
		if v := getenv(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not an integer", name, v))
			}
			return n
		}
		return def
	}
	envDuration := func(name string, def time.Duration) time.Duration {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not a duration (like 500ms, 15s, 1m)", name, v))
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
	var maxInFlight, workers, maxScans, maxConns int64
	fs.StringVar(&c.host, "host", envString("HOST", ""), "address to listen on; empty means all interfaces (env HOST)")
	fs.IntVar(&c.port, "port", int(envInt("PORT", 8080)), "TCP port to listen on (env PORT)")
	fs.StringVar(&c.modelPath, "model-path", envString("MODEL_PATH", defaultModelPath), "ONNX model file, with its declaration model.json beside it (internal/contract; env MODEL_PATH)")
	fs.StringVar(&c.onnxruntimeLib, "onnxruntime-lib", envString("ONNXRUNTIME_LIB", defaultLib), "onnxruntime shared library (env ONNXRUNTIME_LIB)")
	fs.Int64Var(&c.limits.MaxBodyBytes, "max-body-bytes", envInt("MAX_BODY_BYTES", 10*mib), "largest request body; larger get 413 (env MAX_BODY_BYTES)")
	fs.Int64Var(&c.limits.MaxBufferedBytes, "max-buffered-bytes", envInt("MAX_BUFFERED_BYTES", 32*mib), "request bodies held in memory at once, all requests together; past it 503 (env MAX_BUFFERED_BYTES)")
	fs.Int64Var(&c.limits.MaxPixels, "max-pixels", envInt("MAX_PIXELS", 4*mib), "largest image in pixels, checked before decoding; larger get 413 (env MAX_PIXELS)")
	fs.Int64Var(&maxScans, "max-jpeg-scans", envInt("MAX_JPEG_SCANS", 100), "JPEGs with more scans get 413 (env MAX_JPEG_SCANS)")
	fs.Int64Var(&maxInFlight, "max-inflight", envInt("MAX_INFLIGHT", 64), "requests holding their image, waiting for or using a worker; more get 503 (env MAX_INFLIGHT)")
	fs.Int64Var(&workers, "workers", envInt("WORKERS", 0), "requests decoding or inferring at once, and onnxruntime sessions (env WORKERS; default GOMAXPROCS, fewer if the memory limit needs it)")
	fs.Int64Var(&maxConns, "max-connections", envInt("MAX_CONNECTIONS", 1024), "open connections; more wait in the listen backlog (env MAX_CONNECTIONS)")
	fs.DurationVar(&c.timeouts.ReadHeader, "read-header-timeout", envDuration("READ_HEADER_TIMEOUT", 5*time.Second), "env READ_HEADER_TIMEOUT")
	fs.DurationVar(&c.timeouts.Read, "read-timeout", envDuration("READ_TIMEOUT", 15*time.Second), "whole request read (env READ_TIMEOUT)")
	fs.DurationVar(&c.timeouts.Write, "write-timeout", envDuration("WRITE_TIMEOUT", 15*time.Second), "from the end of the request header to the end of the answer; also bounds the work of a request (env WRITE_TIMEOUT)")
	fs.DurationVar(&c.timeouts.Idle, "idle-timeout", envDuration("IDLE_TIMEOUT", 60*time.Second), "keep-alive idle (env IDLE_TIMEOUT)")
	fs.DurationVar(&c.timeouts.DrainDelay, "drain-delay", envDuration("DRAIN_DELAY", 5*time.Second), "after SIGTERM: not ready but still serving, before closing the listener (env DRAIN_DELAY)")
	fs.DurationVar(&c.timeouts.ShutdownGrace, "shutdown-grace", envDuration("SHUTDOWN_GRACE", 20*time.Second), "then: time for in-flight requests to finish (env SHUTDOWN_GRACE)")
	fs.BoolVar(&c.check, "check", false, "check the model and exit: it loads, its input and output are what the server uses, its declaration (model.json beside it) agrees with its graph, an inference gives probabilities summing to 1, and the evaluation set gives the report's answers (model/Dockerfile runs it)")
	fs.StringVar(&c.reportPath, "report", envString("MODEL_REPORT", defaultReport), "with -check: the model's committed report, which the evaluation set must reproduce; empty checks the model alone (env MODEL_REPORT)")
	fs.StringVar(&c.evalDir, "eval-dir", envString("EVAL_DIR", defaultEvalDir), "with -check: the evaluation set, <label>/<image> files (env EVAL_DIR)")
	fs.StringVar(&c.fingerprint, "model-fingerprint", envString("MODEL_FINGERPRINT", ""), "the model's fingerprint, reported by /readyz and the "+server.FingerprintHeader+" header of /predict; empty reports none (env MODEL_FINGERPRINT)")
	logLevel := fs.String("log-level", envString("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := c.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("-log-level (LOG_LEVEL) = %q: want debug, info, warn or error", *logLevel))
	}
	if !validFingerprint(c.fingerprint) {
		errs = append(errs, fmt.Errorf("%s = %q: want at most 128 letters, digits, '.', '_' or '-' (an image tag)", setting("model-fingerprint"), c.fingerprint))
	}
	inRange := func(flagName string, v, lo, hi int64) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s = %d: out of range, want %d to %d", setting(flagName), v, lo, hi))
		}
	}
	durationInRange := func(flagName string, v, lo, hi time.Duration) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s = %s: out of range, want %s to %s", setting(flagName), v, lo, hi))
		}
	}
	inRange("port", int64(c.port), 1, 65535)
	inRange("max-body-bytes", c.limits.MaxBodyBytes, 1*kib, 1*gib)
	inRange("max-buffered-bytes", c.limits.MaxBufferedBytes, c.limits.MaxBodyBytes, 64*gib)
	inRange("max-pixels", c.limits.MaxPixels, 1024, 256*mib)
	inRange("max-jpeg-scans", maxScans, 1, 1000)
	inRange("max-inflight", maxInFlight, 1, 10000)
	inRange("workers", workers, 0, 64)
	inRange("max-connections", maxConns, 16, 100000)
	durationInRange("read-header-timeout", c.timeouts.ReadHeader, 100*time.Millisecond, time.Minute)
	durationInRange("read-timeout", c.timeouts.Read, c.timeouts.ReadHeader, 10*time.Minute)
	durationInRange("write-timeout", c.timeouts.Write, time.Second, 10*time.Minute)
	durationInRange("idle-timeout", c.timeouts.Idle, time.Second, time.Hour)
	durationInRange("drain-delay", c.timeouts.DrainDelay, 0, 5*time.Minute)
	durationInRange("shutdown-grace", c.timeouts.ShutdownGrace, time.Second, 10*time.Minute)
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	c.limits.MaxJPEGScans, c.limits.MaxInFlight, c.limits.MaxConnections = int(maxScans), int(maxInFlight), int(maxConns)

	// Memory: bodies are bounded by MAX_BUFFERED_BYTES, each worker's decode
	// by its pixel limit. Under a container limit they must fit in it.
	decode := preprocess.Limits{MaxPixels: c.limits.MaxPixels}.DecodeMemory()
	if workers == 0 {
		workers = int64(runtime.GOMAXPROCS(0))
		if memoryLimit > 0 {
			fit := (memoryLimit - memoryBaseline - c.limits.MaxBufferedBytes) / decode
			workers = max(min(workers, fit), 1)
		}
	}
	c.limits.Workers = int(workers)
	if memoryLimit > 0 {
		need := memoryBaseline + c.limits.MaxBufferedBytes + workers*decode
		if need > memoryLimit {
			return c, fmt.Errorf("memory: -max-buffered-bytes (MAX_BUFFERED_BYTES) %d MiB + -workers (WORKERS) %d x %d MiB to decode an image of -max-pixels (MAX_PIXELS) %d + %d MiB for the rest = %d MiB, over the container's memory limit of %d MiB: lower one of them",
				c.limits.MaxBufferedBytes/mib, workers, decode/mib, c.limits.MaxPixels, memoryBaseline/mib, need/mib, memoryLimit/mib)
		}
		// The Go runtime's share: the rest is for decodes (libjpeg's are
		// C memory), onnxruntime and the mapped libraries.
		c.goMemoryLimit = memoryLimit - workers*decode - 64*mib
	}
	return c, nil
}

// validFingerprint: what can be an image tag, so it is safe in a header.
func validFingerprint(fp string) bool {
	if len(fp) > 128 {
		return false
	}
	for _, r := range fp {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// setting names a setting by its flag and its environment variable.
func setting(flagName string) string {
	env := []byte(flagName)
	for i, b := range env {
		switch {
		case b == '-':
			env[i] = '_'
		case b >= 'a' && b <= 'z':
			env[i] = b - 'a' + 'A'
		}
	}
	return fmt.Sprintf("-%s (%s)", flagName, env)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "package" {
		// `server package ...`: package a user's model (internal/pack).
		lib := os.Getenv("ONNXRUNTIME_LIB")
		if lib == "" {
			lib = defaultLib
		}
		os.Exit(pack.Main(os.Args[2:], lib, os.Stdout, os.Stderr))
	}
	started := time.Now()
	memoryLimit := containerMemoryLimit()
	cfg, err := parseConfig(os.Args[1:], os.Getenv, memoryLimit)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(2)
	}
	if cfg.check {
		// One line either way: a failing `docker build` shows it as the reason.
		if err := check(cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	slog.SetDefault(logger)
	if os.Getenv("GOGC") == "" {
		// The live heap is small (a few MiB) and every request allocates
		// tens of KiB: at the default 100 the collector would run every few
		// hundred requests. The memory limit still bounds the heap.
		debug.SetGCPercent(400)
	}
	// The workers (decoding and inference, in C through cgo) each hold a
	// thread of their own, and a P whenever they run Go code or have just
	// entered C (the scheduler counts a cgo call as a system call: the P
	// stays with it until sysmon takes it back). A P for each worker on top
	// of GOMAXPROCS (the environment's, or by default the CPUs or the
	// container's CPU limit) keeps that many for reading requests and
	// writing answers; the CPUs still bound what runs at once. Measured at
	// 32 clients on 2 cores: +25% requests/s, half the p99 (README); with
	// as many workers as Ps, p99 was 53 ms.
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + cfg.limits.Workers)
	if cfg.goMemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.goMemoryLimit)
		logger.Info("memory limit", "container_bytes", memoryLimit, "go_bytes", cfg.goMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg, logger, started); err != nil {
		logger.Error("exiting", "err", err)
		os.Exit(1)
	}
}

// run listens and serves at once (/readyz answers 503 while the model
// loads), then loads the model and turns ready.
func run(ctx context.Context, cfg config, logger *slog.Logger, started time.Time) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.host, strconv.Itoa(cfg.port)))
	if err != nil {
		return err
	}
	srv := server.New(cfg.limits, logger)
	srv.SetFingerprint(cfg.fingerprint)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln, cfg.timeouts) }()

	if err := classifier.InitRuntime(cfg.onnxruntimeLib); err != nil {
		return err
	}
	model, err := classifier.Load(cfg.modelPath, cfg.limits.Workers)
	if err != nil {
		return err
	}
	srv.SetModel(model)
	logger.Info("model loaded", "model", cfg.modelPath, "labels", model.Labels(),
		"onnxruntime", classifier.RuntimeVersion(), "workers", cfg.limits.Workers, "gomaxprocs", runtime.GOMAXPROCS(0),
		"startup_ms", float64(time.Since(started).Microseconds())/1000)
	if err := <-served; err != nil {
		// Handlers may still be running (the grace period ran out): leave
		// the sessions to the process exit rather than free them under them.
		return err
	}
	return model.Close()
}

// check runs -check: see evaluate.Check.
func check(cfg config) error {
	if err := classifier.InitRuntime(cfg.onnxruntimeLib); err != nil {
		return fmt.Errorf("%w: %v", evaluate.ErrCheck, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	summary, err := evaluate.Check(ctx, evaluate.CheckOptions{ModelPath: cfg.modelPath, ReportPath: cfg.reportPath, EvalDir: cfg.evalDir})
	if err != nil {
		return err
	}
	fmt.Println(summary)
	return nil
}

// containerMemoryLimit is the memory limit of this process's cgroup (v2
// memory.max or v1 memory.limit_in_bytes), 0 if there is none.
func containerMemoryLimit() int64 {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	defer f.Close()
	var limit int64
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		// hierarchy-ID:controllers:path
		fields := strings.SplitN(lines.Text(), ":", 3)
		if len(fields) != 3 {
			continue
		}
		var file string
		switch {
		case fields[0] == "0" && fields[1] == "":
			file = filepath.Join("/sys/fs/cgroup", fields[2], "memory.max")
		case hasController(fields[1], "memory"):
			file = filepath.Join("/sys/fs/cgroup/memory", fields[2], "memory.limit_in_bytes")
		default:
			continue
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 { // "max", or v1's "unlimited"
			continue
		}
		if limit == 0 || n < limit {
			limit = n
		}
	}
	return limit
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}
