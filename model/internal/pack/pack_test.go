package pack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/planets-mlops/deploy/model/internal/contract"
	"github.com/planets-mlops/deploy/model/internal/evaluate"
	"github.com/planets-mlops/deploy/model/internal/pack"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

// The guide's model, its labels.json and a folder of held-out images (the
// committed evaluation set standing in for the user's, 10 a class): the
// command writes the declaration (layout and channels read from the graph,
// the guide's preprocessing by default), an evaluation set of -per-class
// images a class chosen by their contents' hash, and a report that
// -check then reproduces.
func TestPackageTheGuidesModel(t *testing.T) {
	testruntime.Init(t)
	root := testruntime.ModuleRoot(t)
	guide := filepath.Join(root, "testdata", "models", "guide", "artifacts")
	in := t.TempDir()
	labels := []string{"Earth", "Jupiter", "Mars", "Mercury", "Moon", "Neptune", "Pluto", "Saturn", "Uranus", "Venus"}
	raw, _ := json.Marshal(labels)
	if err := os.WriteFile(filepath.Join(in, "labels.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile(filepath.Join(guide, "planets.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "model.onnx"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	run := func(perClass string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := pack.Main([]string{"-model", filepath.Join(in, "model.onnx"), "-labels", filepath.Join(in, "labels.json"),
			"-images", filepath.Join(root, "eval"), "-out", out, "-per-class", perClass, "-rounds", "1"}, os.Getenv("ONNXRUNTIME_LIB"), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, stdout, stderr := run("4")
	t.Log(stdout, stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	decl, err := contract.Read(filepath.Join(out, "artifacts", "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := contract.Declaration{Format: contract.Format, Layout: "NHWC", Channels: 1, Range: "0..1", Resize: "bilinear", Output: "logits", Labels: labels}
	if decl.Layout != want.Layout || decl.Channels != 1 || decl.Range != "0..1" || decl.Resize != "bilinear" || decl.Output != "logits" || !slices.Equal(decl.Labels, labels) {
		t.Errorf("declaration %+v, want %+v", decl, want)
	}
	set, err := evaluate.LoadSet(filepath.Join(out, "eval"))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Images) != 40 {
		t.Errorf("%d images, want 4 for each of 10 classes", len(set.Images))
	}
	first := set.SHA256
	// The same rule picks the same images; -check reproduces the report.
	if code, _, stderr := run("4"); code != 0 {
		t.Fatal(stderr)
	}
	if again, _ := evaluate.LoadSet(filepath.Join(out, "eval")); again.SHA256 != first {
		t.Error("a second run picked other images")
	}
	summary, err := evaluate.Check(context.Background(), evaluate.CheckOptions{
		ModelPath: filepath.Join(out, "artifacts", "planets.onnx"), ReportPath: filepath.Join(out, "artifacts", "report.json"), EvalDir: filepath.Join(out, "eval")})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(summary)

	// A folder that is not a label, and an ambiguous layout flag, are
	// refused with one line naming them.
	if err := os.MkdirAll(filepath.Join(in, "images", "Sun"), 0o755); err != nil {
		t.Fatal(err)
	}
	var stderrBuf bytes.Buffer
	code = pack.Main([]string{"-model", filepath.Join(in, "model.onnx"), "-labels", filepath.Join(in, "labels.json"), "-images", filepath.Join(in, "images"), "-out", out},
		os.Getenv("ONNXRUNTIME_LIB"), &bytes.Buffer{}, &stderrBuf)
	if code != 1 || !strings.Contains(stderrBuf.String(), `folder "Sun" is not one of the labels`) || strings.Count(stderrBuf.String(), "\n") != 1 {
		t.Errorf("exit %d, %q", code, stderrBuf.String())
	}
	stderrBuf.Reset()
	code = pack.Main([]string{"-model", filepath.Join(in, "model.onnx"), "-images", filepath.Join(root, "eval"), "-out", out, "-layout", "NCHW"},
		os.Getenv("ONNXRUNTIME_LIB"), &bytes.Buffer{}, &stderrBuf)
	if code != 1 || !strings.Contains(stderrBuf.String(), "-layout NCHW: the input \"conv2d_input\"") {
		t.Errorf("exit %d, %q", code, stderrBuf.String())
	}
}
