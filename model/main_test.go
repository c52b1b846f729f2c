package main

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, func(string) string { return "" }, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.port != 8080 || c.host != "" || c.modelPath != defaultModelPath || c.onnxruntimeLib != defaultLib {
		t.Errorf("defaults: %+v", c)
	}
	if c.limits.MaxBodyBytes <= 0 || c.limits.MaxPixels <= 0 || c.limits.MaxInFlight <= 0 || c.limits.Workers <= 0 ||
		c.limits.MaxBufferedBytes < c.limits.MaxBodyBytes || c.limits.MaxJPEGScans <= 0 || c.limits.MaxConnections <= 0 {
		t.Errorf("limits: %+v", c.limits)
	}
	if c.timeouts.Read <= 0 || c.timeouts.Write <= 0 || c.timeouts.Idle <= 0 || c.timeouts.ShutdownGrace <= 0 {
		t.Errorf("timeouts: %+v", c.timeouts)
	}
	if c.goMemoryLimit != 0 {
		t.Errorf("no container limit, yet a Go memory limit of %d", c.goMemoryLimit)
	}
}

func TestConfigEnvThenFlags(t *testing.T) {
	env := map[string]string{"PORT": "9000", "MODEL_PATH": "/m.onnx", "MAX_INFLIGHT": "7", "DRAIN_DELAY": "2s", "LOG_LEVEL": "debug", "WORKERS": "3"}
	c, err := parseConfig([]string{"-port", "9001"}, func(k string) string { return env[k] }, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.port != 9001 || c.modelPath != "/m.onnx" || c.limits.MaxInFlight != 7 || c.timeouts.DrainDelay != 2*time.Second ||
		c.logLevel.String() != "DEBUG" || c.limits.Workers != 3 {
		t.Errorf("got %+v", c)
	}
}

// TestConfigRejectsBadValues: every setting has a range, and the error
// names the setting (flag and environment variable), the value and the
// range.
func TestConfigRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{env: map[string]string{"PORT": "eighty"}, want: `PORT="eighty": not an integer`},
		{env: map[string]string{"READ_TIMEOUT": "soon"}, want: `READ_TIMEOUT="soon": not a duration`},
		{env: map[string]string{"MAX_BODY_BYTES": "0"}, want: "-max-body-bytes (MAX_BODY_BYTES) = 0: out of range, want 1024 to 1073741824"},
		{env: map[string]string{"LOG_LEVEL": "loud"}, want: `-log-level (LOG_LEVEL) = "loud": want debug, info, warn or error`},
		{env: map[string]string{"PORT": "70000"}, want: "-port (PORT) = 70000: out of range, want 1 to 65535"},
		{args: []string{"-write-timeout", "1ns"}, want: "-write-timeout (WRITE_TIMEOUT) = 1ns: out of range, want 1s to 10m0s"},
		{args: []string{"-read-header-timeout", "0", "-read-timeout", "0"}, want: "-read-header-timeout (READ_HEADER_TIMEOUT) = 0s: out of range, want 100ms to 1m0s"},
		{args: []string{"-read-timeout", "0"}, want: "-read-timeout (READ_TIMEOUT) = 0s: out of range, want 5s to 10m0s"},
		{args: []string{"-workers", "500"}, want: "-workers (WORKERS) = 500: out of range, want 0 to 64"},
		{args: []string{"-max-inflight", "0"}, want: "-max-inflight (MAX_INFLIGHT) = 0: out of range, want 1 to 10000"},
		{args: []string{"-max-pixels", "-1"}, want: "-max-pixels (MAX_PIXELS) = -1: out of range"},
		{args: []string{"-max-jpeg-scans", "0"}, want: "-max-jpeg-scans (MAX_JPEG_SCANS) = 0: out of range, want 1 to 1000"},
		{args: []string{"-max-buffered-bytes", "1000000"}, want: "-max-buffered-bytes (MAX_BUFFERED_BYTES) = 1000000: out of range, want 10485760 to"},
		{args: []string{"-max-connections", "1"}, want: "-max-connections (MAX_CONNECTIONS) = 1: out of range, want 16 to 100000"},
		{args: []string{"-idle-timeout", "0"}, want: "-idle-timeout (IDLE_TIMEOUT) = 0s: out of range"},
		{args: []string{"-shutdown-grace", "0"}, want: "-shutdown-grace (SHUTDOWN_GRACE) = 0s: out of range"},
		{args: []string{"-drain-delay", "-1s"}, want: "-drain-delay (DRAIN_DELAY) = -1s: out of range"},
	} {
		_, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: err = %v, want it to contain %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// TestConfigFitsTheMemoryLimit: under a container memory limit, the bodies'
// budget and every worker's decode must fit in it; the default worker count
// shrinks to fit, an explicit one that does not fit is an error.
func TestConfigFitsTheMemoryLimit(t *testing.T) {
	noEnv := func(string) string { return "" }
	c, err := parseConfig(nil, noEnv, 256*mib)
	if err != nil {
		t.Fatal(err)
	}
	if c.limits.Workers < 1 || c.goMemoryLimit <= 0 || c.goMemoryLimit >= 256*mib {
		t.Errorf("under 256 MiB: workers %d, Go memory limit %d", c.limits.Workers, c.goMemoryLimit)
	}
	_, err = parseConfig([]string{"-workers", "8"}, noEnv, 256*mib)
	if err == nil || !strings.Contains(err.Error(), "over the container's memory limit of 256 MiB") || !strings.Contains(err.Error(), "-workers (WORKERS) 8") {
		t.Errorf("8 workers under 256 MiB: err = %v", err)
	}
}

// TestConfigFingerprint: MODEL_FINGERPRINT (the Deployment's) or
// -model-fingerprint names the model; anything that could not be an image
// tag (and so could break the header it goes in) is refused.
func TestConfigFingerprint(t *testing.T) {
	c, err := parseConfig(nil, func(k string) string { return map[string]string{"MODEL_FINGERPRINT": "5d41402abc4b"}[k] }, 0)
	if err != nil || c.fingerprint != "5d41402abc4b" {
		t.Fatalf("fingerprint %q, err %v", c.fingerprint, err)
	}
	for _, bad := range []string{"a\r\nX-Evil: 1", "has space", string(make([]byte, 129))} {
		_, err := parseConfig([]string{"-model-fingerprint", bad}, func(string) string { return "" }, 0)
		if err == nil || !strings.Contains(err.Error(), "-model-fingerprint (MODEL_FINGERPRINT)") {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}
