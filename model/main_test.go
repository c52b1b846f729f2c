package main

import (
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.port != 8080 || c.host != "" || c.modelPath != defaultModelPath || c.onnxruntimeLib != defaultLib {
		t.Errorf("defaults: %+v", c)
	}
	if c.limits.MaxBodyBytes <= 0 || c.limits.MaxPixels <= 0 || c.limits.MaxInFlight <= 0 || c.limits.Workers <= 0 {
		t.Errorf("limits: %+v", c.limits)
	}
	if c.timeouts.Read <= 0 || c.timeouts.Write <= 0 || c.timeouts.Idle <= 0 || c.timeouts.ShutdownGrace <= 0 {
		t.Errorf("timeouts: %+v", c.timeouts)
	}
}

func TestConfigEnvThenFlags(t *testing.T) {
	env := map[string]string{"PORT": "9000", "MODEL_PATH": "/m.onnx", "MAX_INFLIGHT": "7", "DRAIN_DELAY": "2s", "LOG_LEVEL": "debug"}
	c, err := parseConfig([]string{"-port", "9001"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.port != 9001 || c.modelPath != "/m.onnx" || c.limits.MaxInFlight != 7 || c.timeouts.DrainDelay != 2*time.Second || c.logLevel.String() != "DEBUG" {
		t.Errorf("got %+v", c)
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	for _, env := range []map[string]string{
		{"PORT": "eighty"}, {"READ_TIMEOUT": "soon"}, {"MAX_BODY_BYTES": "0"}, {"LOG_LEVEL": "loud"}, {"PORT": "70000"},
	} {
		if _, err := parseConfig(nil, func(k string) string { return env[k] }); err == nil {
			t.Errorf("%v: want an error", env)
		}
	}
}
