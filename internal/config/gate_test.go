package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestModelGateSettings(t *testing.T) {
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model.Gate.MinAccuracy != 0.9 || c.Model.Gate.MaxAccuracyDrop != 0.05 || c.Model.Baseline != nil {
		t.Errorf("defaults: gate %+v, baseline %v", c.Model.Gate, c.Model.Baseline)
	}
	for _, tc := range []struct{ key, value, want string }{
		{"mlops:minAccuracy", "90%", `mlops:minAccuracy: got "90%"; expected a fraction from 0 to 1, such as 0.9 (0 lets any model through)`},
		{"mlops:minAccuracy", "1.5", `mlops:minAccuracy: got "1.5"; expected a fraction from 0 to 1`},
		{"mlops:maxAccuracyDrop", "-0.1", `mlops:maxAccuracyDrop: got "-0.1"; expected a fraction from 0 to 1, such as 0.9 (1 lets any drop through)`},
	} {
		if _, err := load(t, map[string]string{tc.key: tc.value}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v; want %q", tc.key, tc.value, err, tc.want)
		}
	}

	report, _ := filepath.Abs(filepath.Join("..", "..", "model", "artifacts", "report.json"))
	t.Setenv(BaselineReportEnv, report)
	if c, err := load(t, nil); err != nil || c.Model.Baseline == nil || c.Model.Baseline.Correct != 99 || c.Model.BaselineName != report {
		t.Errorf("baseline %s: %v", report, err)
	}
	t.Setenv(BaselineReportEnv, filepath.Join(t.TempDir(), "none.json"))
	if _, err := load(t, nil); err == nil || !strings.Contains(err.Error(), BaselineReportEnv+"=") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a missing baseline: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"format":"something else"}`), 0o644)
	t.Setenv(BaselineReportEnv, bad)
	if _, err := load(t, nil); err == nil || !strings.Contains(err.Error(), "format") {
		t.Errorf("a baseline of another format: %v", err)
	}
}
