package program

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/planets-mlops/deploy/internal/config"
)

// A model directory that does not exist is refused as the configuration
// error it is, naming the key, before anything is declared.
func TestAMissingModelDirIsRefusedNamingTheKey(t *testing.T) {
	w := newWorkspace(t, map[string]string{"mlops:modelDir": "/nonexistent/model"})
	// Listed as every configuration error is (config.Invalid).
	requireAll(t, w.runRefused(t), "invalid configuration, nothing was changed:\n"+`mlops:modelDir: model build context "/nonexistent/model" does not exist`)
}

// The default branch's report (MLOPS_BASELINE_REPORT) is read by the
// program, and one that is missing or of another format is refused, naming
// the variable and the file, before anything is declared.
func TestTheBaselineReportIsReadAndNamed(t *testing.T) {
	committed := filepath.Join(repoRoot, "model", "artifacts", "report.json")
	baseline, err := readBaseline(committed)
	if err != nil || baseline == nil || baseline.Correct != 99 {
		t.Errorf("baseline %s: %+v, %v", committed, baseline, err)
	}
	if baseline, err := readBaseline(""); baseline != nil || err != nil {
		t.Errorf("no baseline given: %+v, %v; want none and no error", baseline, err)
	}

	missing := filepath.Join(t.TempDir(), "none.json")
	t.Run("missing", func(t *testing.T) {
		t.Setenv(config.BaselineReportEnv, missing)
		requireAll(t, newWorkspace(t, nil).runRefused(t), "invalid configuration, nothing was changed", config.BaselineReportEnv+"="+missing, "no such file", "the default branch's model report, or unset")
	})
	t.Run("another format", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(bad, []byte(`{"format":"something else"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv(config.BaselineReportEnv, bad)
		requireAll(t, newWorkspace(t, nil).runRefused(t), config.BaselineReportEnv+"="+bad, "format")
	})
}
