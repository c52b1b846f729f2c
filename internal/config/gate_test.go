package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestModelGateSettings(t *testing.T) {
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model.Gate.MinAccuracy != 0.9 || c.Model.Gate.MaxAccuracyDrop != 0.05 || c.Model.BaselineReport != "" {
		t.Errorf("defaults: gate %+v, baseline %q", c.Model.Gate, c.Model.BaselineReport)
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

	// Where the baseline report is comes from the run's environment; the
	// program reads it (internal/program's TestTheBaselineReportIsReadAndNamed).
	report := filepath.Join(t.TempDir(), "baseline.json")
	t.Setenv(BaselineReportEnv, report)
	if c, err := load(t, nil); err != nil || c.Model.BaselineReport != report {
		t.Errorf("%s=%s: baseline %q, %v", BaselineReportEnv, report, c.Model.BaselineReport, err)
	}
}
