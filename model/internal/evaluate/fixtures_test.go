package evaluate_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/evaluate"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

// The reports the program's tests gate on (../testdata) are the real
// evaluations of their models: the second model (testdata/seed78) and that
// model with two of its outputs' labels swapped (Jupiter and Saturn;
// testdata/swapped-labels holds only the report: the tests make the model
// with testruntime.Relabel's rewrite, byte for byte the same, from seed78's).
// MLOPS_UPDATE_FIXTURES=1 rewrites them.
func TestFixtureReportsAreTheirModelsEvaluations(t *testing.T) {
	testruntime.Init(t)
	repo := filepath.Dir(testruntime.ModuleRoot(t))
	seed78 := filepath.Join(repo, "testdata", "seed78", "model", "artifacts")
	raw, err := os.ReadFile(filepath.Join(seed78, "planets.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	swapped := append([]string(nil), labels...)
	swapped[1], swapped[7] = swapped[7], swapped[1]
	swappedDir := filepath.Join(repo, "testdata", "swapped-labels", "model", "artifacts")
	swappedModel := filepath.Join(t.TempDir(), "planets.onnx")
	if err := os.WriteFile(swappedModel, testruntime.Relabel(t, raw, swapped), 0o644); err != nil {
		t.Fatal(err)
	}
	// Its declaration names the swapped labels too (it is committed beside
	// its report: the deploy program's gate tests read both).
	if os.Getenv("MLOPS_UPDATE_FIXTURES") == "1" {
		testruntime.Declare(t, swappedDir, swapped)
	}
	declared, err := os.ReadFile(filepath.Join(swappedDir, "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(swappedModel), "model.json"), declared, 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := evaluate.LoadSet(committed(t).EvalDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ model, report string }{
		{filepath.Join(seed78, "planets.onnx"), filepath.Join(seed78, "report.json")},
		{swappedModel, filepath.Join(swappedDir, "report.json")},
	} {
		model, err := classifier.Load(tc.model, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer model.Close()
		rounds := 0 // the latency is not compared
		if os.Getenv("MLOPS_UPDATE_FIXTURES") == "1" {
			rounds = 20
		}
		fresh, err := evaluate.Evaluate(context.Background(), model, tc.model, set, evaluate.Options{Rounds: rounds})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: accuracy %.4f (%d/%d), classes %v", tc.report, fresh.Accuracy, fresh.Correct, fresh.Total, fresh.Classes)
		if os.Getenv("MLOPS_UPDATE_FIXTURES") == "1" {
			if err := os.MkdirAll(filepath.Dir(tc.report), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := fresh.Write(tc.report); err != nil {
				t.Fatal(err)
			}
		}
		committed, err := evaluate.Read(tc.report)
		if err != nil {
			t.Fatal(err)
		}
		if diffs := evaluate.Differences(committed, fresh); diffs != nil {
			t.Errorf("%s is not its model's evaluation: %v", tc.report, diffs)
		}
	}
}
