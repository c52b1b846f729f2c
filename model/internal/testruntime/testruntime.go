// Package testruntime gives tests the onnxruntime library, the committed
// model and the parity fixture. Only _test.go files import it.
package testruntime

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/planets-mlops/deploy/model/internal/classifier"
)

// Init loads onnxruntime from $ONNXRUNTIME_LIB. Without it the test is
// skipped, loudly, outside CI, and fails in CI (CI=true): tests that need
// the runtime must never pass silently there.
func Init(t testing.TB) {
	t.Helper()
	lib := os.Getenv("ONNXRUNTIME_LIB")
	if lib == "" {
		const msg = "ONNXRUNTIME_LIB is not set: run `export ONNXRUNTIME_LIB=$(model/hack/onnxruntime.sh)` from the repo root to run the model tests"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING: " + msg)
	}
	if err := classifier.InitRuntime(lib); err != nil {
		t.Fatal(err)
	}
}

// ModuleRoot is the model/ directory (where go.mod is).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// ModelPath is the committed model.
func ModelPath(t testing.TB) string {
	return filepath.Join(ModuleRoot(t), "artifacts", "planets.onnx")
}

// LoadModel initialises the runtime and loads the committed model.
func LoadModel(t testing.TB, sessions int) *classifier.Classifier {
	t.Helper()
	Init(t)
	c, err := classifier.Load(ModelPath(t), sessions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ParityImage is one image of the fixture that training/make_fixtures.py wrote.
type ParityImage struct {
	File          string    `json:"file"`
	Format        string    `json:"format"`
	Mode          string    `json:"mode"`
	Width         int       `json:"width"`
	Height        int       `json:"height"`
	Prediction    string    `json:"prediction"`
	Probabilities []float64 `json:"probabilities"`
	Input         []float64 `json:"input"`
	Data          []byte    `json:"-"`
}

// Parity is testdata/parity/expected.json.
type Parity struct {
	ModelSHA256 string        `json:"model_sha256"`
	Labels      []string      `json:"labels"`
	Images      []ParityImage `json:"images"`
}

// LoadParity reads the fixture and its images.
func LoadParity(t testing.TB) Parity {
	t.Helper()
	dir := filepath.Join(ModuleRoot(t), "testdata", "parity")
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p Parity
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	for i := range p.Images {
		if p.Images[i].Data, err = os.ReadFile(filepath.Join(dir, p.Images[i].File)); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.Images) == 0 {
		t.Fatal("parity fixture has no images")
	}
	return p
}
