package program

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/planets-mlops/deploy/internal/config"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

// repoRoot is the repository, two levels up from this package's directory
// (as an absolute path: tests that run the program change into their
// project copy).
var repoRoot, _ = filepath.Abs(filepath.Join("..", ".."))

// relabel is onnx with its "labels" metadata replaced by labels, every
// other byte kept: the rewrite model/internal/testruntime.Relabel makes
// (testdata/swapped-labels' report is of its result; ModelProto field 14,
// StringStringEntryProto key 1, value 2).
func relabel(t *testing.T, onnx []byte, labels []string) []byte {
	t.Helper()
	value, err := json.Marshal(labels)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for rest := onnx; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if n < 0 || m < 0 {
			t.Fatal("not an ONNX model")
		}
		field := rest[:n+m]
		rest = rest[n+m:]
		if num == 14 && typ == protowire.BytesType {
			entry, _ := protowire.ConsumeBytes(field[n:])
			kn, kt, kl := protowire.ConsumeTag(entry)
			if key, _ := protowire.ConsumeBytes(entry[kl:]); kn == 1 && kt == protowire.BytesType && string(key) == "labels" {
				e := protowire.AppendTag(nil, 1, protowire.BytesType)
				e = protowire.AppendString(e, "labels")
				e = protowire.AppendTag(e, 2, protowire.BytesType)
				e = protowire.AppendBytes(e, value)
				field = protowire.AppendBytes(protowire.AppendTag(nil, 14, protowire.BytesType), e)
			}
		}
		out = append(out, field...)
	}
	return out
}

// runRefused runs the program and returns its error; the test fails if it
// succeeds or if it declared anything at all.
func (w *projectCopy) runRefused(t *testing.T) string {
	t.Helper()
	t.Chdir(w.root)
	for _, preview := range []bool{true, false} {
		mocks := &mocktest.Mocks{Preview: preview}
		err := mocks.Run(func(ctx *pulumi.Context) error {
			_, err := declare(ctx, "")
			return err
		}, w.config)
		if err == nil {
			t.Fatalf("preview %v: the program accepted the model", preview)
		}
		if declared := mocks.Resources(); len(declared) > 0 {
			t.Errorf("preview %v: the refused model's run declared %d resources, want none: %v", preview, len(declared), declared)
		}
		if _, err := os.Stat(filepath.Join(w.root, ".build")); err == nil {
			t.Errorf("preview %v: the refused model's build context was staged", preview)
		}
		if !preview {
			return err.Error()
		}
	}
	return ""
}

func requireAll(t *testing.T, msg string, parts ...string) {
	t.Helper()
	t.Logf("refused: %s", msg)
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("the error does not say %q", p)
		}
	}
}

// The second model with its outputs' labels swapped (Jupiter and Saturn)
// answers 79 of the 100 images right: the default gate (mlops:minAccuracy
// 0.9) stops preview and deploy before any resource is declared, naming
// the setting, the figure and the classes that fell; against the default
// branch's report (MLOPS_BASELINE_REPORT) the drop is named too.
func TestTheGateStopsAModelWithSwappedLabels(t *testing.T) {
	committed := filepath.Join(repoRoot, "model", "artifacts", "report.json")
	seed78, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "seed78", "model", "artifacts", "planets.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	labels := []string{"Earth", "Saturn", "Mars", "Mercury", "Moon", "Neptune", "Pluto", "Jupiter", "Uranus", "Venus"}
	swap := func(w *projectCopy) {
		if err := os.WriteFile(filepath.Join(w.modelDir, "artifacts", "planets.onnx"), relabel(t, seed78, labels), 0o644); err != nil {
			t.Fatal(err)
		}
		swapped := filepath.Join(repoRoot, "testdata", "swapped-labels", "model", "artifacts")
		useReport(t, w.modelDir, filepath.Join(swapped, "report.json"))
		declared, err := os.ReadFile(filepath.Join(swapped, "model.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(w.modelDir, "artifacts", "model.json"), declared, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("minAccuracy", func(t *testing.T) {
		w := newWorkspace(t, nil)
		swap(w)
		requireAll(t, w.runRefused(t), "model gate", "mlops:minAccuracy is 90.0%", "79.0% (79/100)",
			"Saturn 0.0% (0/10)", "Jupiter 0.0% (0/10)", "nothing was changed", "pulumi config set mlops:minAccuracy")
	})
	t.Run("maxAccuracyDrop", func(t *testing.T) {
		t.Setenv(config.BaselineReportEnv, committed)
		w := newWorkspace(t, map[string]string{"mlops:minAccuracy": "0"})
		swap(w)
		requireAll(t, w.runRefused(t), "mlops:maxAccuracyDrop is 5.0%", "fell by 20.0%", "from 99.0%", "to 79.0%",
			"Jupiter 100.0% -> 0.0%", "Saturn 100.0% -> 0.0%", committed)
	})
	t.Run("overridden on purpose", func(t *testing.T) {
		t.Setenv(config.BaselineReportEnv, committed)
		w := newWorkspace(t, map[string]string{"mlops:minAccuracy": "0", "mlops:maxAccuracyDrop": "1"})
		swap(w)
		mocks, _ := w.run(t)
		if len(mocks.OfType("docker:index/image:Image")) != 1 {
			t.Errorf("with the gate off the model is not built")
		}
	})
	t.Run("the second model passes against the first", func(t *testing.T) {
		t.Setenv(config.BaselineReportEnv, committed)
		w := newWorkspace(t, nil)
		fixture.UseModel(t, w.modelDir, filepath.Join(repoRoot, "testdata", "seed78", "model", "artifacts"))
		w.run(t)
	})
}

func useReport(t *testing.T, modelDir, report string) {
	t.Helper()
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(modelDir, "artifacts", "report.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A model whose report is missing, or of another model (one flipped byte,
// the committed report left as it was), is refused whatever the gate says.
func TestTheProgramRefusesAStaleOrMissingReport(t *testing.T) {
	t.Run("one byte of the model changed", func(t *testing.T) {
		w := newWorkspace(t, map[string]string{"mlops:minAccuracy": "0", "mlops:maxAccuracyDrop": "1"})
		model := filepath.Join(w.modelDir, "artifacts", "planets.onnx")
		data, err := os.ReadFile(model)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)-1] ^= 0x01
		if err := os.WriteFile(model, data, 0o644); err != nil {
			t.Fatal(err)
		}
		requireAll(t, w.runRefused(t), "is the report of another model", "report.json", "planets.onnx", "go run ./cmd/evaluate")
	})
	t.Run("no report", func(t *testing.T) {
		w := newWorkspace(t, nil)
		if err := os.Remove(filepath.Join(w.modelDir, "artifacts", "report.json")); err != nil {
			t.Fatal(err)
		}
		requireAll(t, w.runRefused(t), "has no report", "go run ./cmd/evaluate")
	})
}
