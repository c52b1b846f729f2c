package evaluate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/contract"
	"github.com/planets-mlops/deploy/model/internal/evaluate"
	"github.com/planets-mlops/deploy/model/internal/server"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

// unlikeOurs are the models training/make_test_models.py makes
// (model/testdata/models/<name>/artifacts), with what their graphs and
// declarations must resolve to.
var unlikeOurs = []struct {
	name, input, output string
	shape               []int64
	classes             []string // nil: the ten planets
}{
	{name: "guide", input: "conv2d_input", output: "dense_1", shape: []int64{1, 32, 32, 1}},
	{name: "rgb64", input: "pixels", output: "logits", shape: []int64{1, 3, 64, 64}},
	{name: "three", input: "image", output: "scores", shape: []int64{1, 1, 32, 32}, classes: []string{"Jupiter", "Mars", "Moon"}},
	{name: "probs", input: "input", output: "probabilities", shape: []int64{1, 1, 32, 32}},
}

func unlikeOursDir(t *testing.T, name string) string {
	return filepath.Join(testruntime.ModuleRoot(t), "testdata", "models", name, "artifacts")
}

// evalSubset is the committed evaluation set, or its classes' part of it in
// a directory also named eval.
func evalSubset(t *testing.T, classes []string) string {
	all := committed(t).EvalDir
	if classes == nil {
		return all
	}
	dir := filepath.Join(t.TempDir(), "eval")
	for _, c := range classes {
		entries, err := os.ReadDir(filepath.Join(all, c))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(dir, c), 0o755)
		for _, e := range entries {
			raw, err := os.ReadFile(filepath.Join(all, c, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, c, e.Name()), raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// Models unlike ours (another size, RGB, NHWC with Keras's names, bilinear,
// mean/std, three classes, probabilities out) each load with their
// declaration, pass -check against their committed report, give that
// report's answers, and are served in MLEM's shape with the report's label.
// MLOPS_UPDATE_FIXTURES=1 rewrites the reports.
func TestModelsUnlikeOurs(t *testing.T) {
	testruntime.Init(t)
	for _, m := range unlikeOurs {
		t.Run(m.name, func(t *testing.T) {
			dir := unlikeOursDir(t, m.name)
			modelPath := filepath.Join(dir, "planets.onnx")
			reportPath := filepath.Join(dir, "report.json")
			evalDir := evalSubset(t, m.classes)
			model, err := classifier.Load(modelPath, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer model.Close()
			ct := model.Contract()
			want := m.classes
			if want == nil {
				want = labels
			}
			if ct.Input != m.input || ct.Output != m.output || !slices.Equal(ct.Spec.Shape(), m.shape) || !slices.Equal(model.Labels(), want) {
				t.Fatalf("contract: input %q %v, output %q, labels %v; want %q %v, %q, %v", ct.Input, ct.Spec.Shape(), ct.Output, model.Labels(), m.input, m.shape, m.output, want)
			}

			set, err := evaluate.LoadSet(evalDir)
			if err != nil {
				t.Fatal(err)
			}
			rounds := 0
			if os.Getenv("MLOPS_UPDATE_FIXTURES") == "1" {
				rounds = 5
			}
			fresh, err := evaluate.Evaluate(context.Background(), model, modelPath, set, evaluate.Options{Rounds: rounds})
			if err != nil {
				t.Fatal(err)
			}
			if rounds > 0 {
				if err := fresh.Write(reportPath); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("accuracy %.4f (%d/%d)", fresh.Accuracy, fresh.Correct, fresh.Total)
			report, err := evaluate.Read(reportPath)
			if err != nil {
				t.Fatal(err)
			}
			if diffs := evaluate.Differences(report, fresh); diffs != nil {
				t.Fatalf("%s is not its model's evaluation: %v", reportPath, diffs)
			}
			summary, err := evaluate.Check(context.Background(), evaluate.CheckOptions{ModelPath: modelPath, ReportPath: reportPath, EvalDir: evalDir})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(summary)

			// Served: an image the report says it answers right.
			i := slices.IndexFunc(report.Images, func(a evaluate.Answer) bool { return a.Predicted == a.Label })
			answer := report.Images[i]
			image, err := os.ReadFile(filepath.Join(evalDir, filepath.FromSlash(answer.File)))
			if err != nil {
				t.Fatal(err)
			}
			srv := server.New(server.Limits{MaxBodyBytes: 1 << 20, MaxBufferedBytes: 8 << 20, MaxPixels: 1 << 22, MaxJPEGScans: 100, MaxInFlight: 4, Workers: 1, MaxConnections: 16},
				slog.New(slog.NewJSONHandler(io.Discard, nil)))
			defer srv.Close()
			srv.SetModel(model)
			ts := httptest.NewServer(srv.Handler())
			defer ts.Close()
			resp, err := http.Post(ts.URL+"/predict", "image/png", bytes.NewReader(image))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct {
				Prediction    string             `json:"prediction"`
				Probabilities map[string]float64 `json:"probabilities"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("/predict: %d, %v", resp.StatusCode, err)
			}
			var sum float64
			for _, p := range got.Probabilities {
				sum += p
			}
			if got.Prediction != answer.Label || len(got.Probabilities) != len(want) || math.Abs(sum-1) > 1e-3 ||
				math.Abs(got.Probabilities[answer.Label]-answer.Probability) > 1e-4 {
				t.Errorf("/predict %s = %+v; want %s with p %.4f, %d probabilities summing to 1", answer.File, got, answer.Label, answer.Probability, len(want))
			}
		})
	}
}

// Each model misdeclared (the layout flipped, a range with a mean per
// channel it does not have, a label too few, probabilities declared for
// logits) is refused at load or at -check with one line naming the
// declaration and the field.
func TestMisdeclaredModelsAreRefused(t *testing.T) {
	testruntime.Init(t)
	for _, m := range unlikeOurs {
		src := unlikeOursDir(t, m.name)
		decl, err := contract.Read(filepath.Join(src, contract.FileName))
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			field string
			edit  func(d *contract.Declaration)
			want  string
		}{
			{"layout", func(d *contract.Declaration) {
				d.Layout = map[string]string{"NCHW": "NHWC", "NHWC": "NCHW"}[d.Layout]
			}, "layout: declared"},
			{"range", func(d *contract.Declaration) {
				d.Range, d.Mean, d.Std = "mean_std", []float64{0.5, 0.5}, []float64{0.25, 0.25}
			}, "mean: 2 values, want"},
			{"labels", func(d *contract.Declaration) { d.Labels = d.Labels[1:] }, "labels: "},
			{"output", func(d *contract.Declaration) { d.Output = "probabilities" }, `output: declared "probabilities"`},
		} {
			if tc.field == "output" && decl.Output == "probabilities" {
				continue
			}
			t.Run(m.name+"/"+tc.field, func(t *testing.T) {
				dir := t.TempDir()
				raw, err := os.ReadFile(filepath.Join(src, "planets.onnx"))
				if err != nil {
					t.Fatal(err)
				}
				modelPath := filepath.Join(dir, "planets.onnx")
				if err := os.WriteFile(modelPath, raw, 0o644); err != nil {
					t.Fatal(err)
				}
				d := *decl
				d.Labels = slices.Clone(decl.Labels)
				tc.edit(&d)
				declPath := filepath.Join(dir, contract.FileName)
				if err := d.Write(declPath); err != nil {
					t.Fatal(err)
				}
				_, err = evaluate.Check(context.Background(), evaluate.CheckOptions{ModelPath: modelPath})
				if err == nil {
					t.Fatal("the check passed")
				}
				msg := err.Error()
				t.Log(msg)
				if !strings.Contains(msg, "declaration "+declPath+": "+tc.want) || strings.Contains(msg, "\n") {
					t.Errorf("%q: want one line saying %q", msg, "declaration "+declPath+": "+tc.want)
				}
				if tc.field == "output" {
					return // -check's inference finds it; the load cannot
				}
				if _, err := classifier.Load(modelPath, 1); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("load: %v; want it refused saying %q", err, tc.want)
				}
			})
		}
	}
}
