package evaluate_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/planets-mlops/deploy/model/internal/evaluate"
	"github.com/planets-mlops/deploy/model/internal/preprocess"
	"github.com/planets-mlops/deploy/model/internal/testenv"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

// The committed report is what the evaluation of the committed model on
// the committed set gives (latency aside), and holds every figure the
// deploy gate and the pull request comment read.
func TestCommittedReportIsTheCommittedModelsEvaluation(t *testing.T) {
	opts := committed(t)
	model := testruntime.LoadModel(t, 1)
	set, err := evaluate.LoadSet(opts.EvalDir)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := evaluate.Evaluate(context.Background(), model, opts.ModelPath, set, evaluate.Options{Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	report, err := evaluate.Read(opts.ReportPath)
	if err != nil {
		t.Fatal(err)
	}
	if diffs := evaluate.Differences(report, fresh); diffs != nil {
		t.Errorf("artifacts/report.json is not the committed model's evaluation: %v", diffs)
	}
	if fresh.Total != 100 || len(fresh.Classes) != 10 || len(fresh.Confusion.Rows) != 10 {
		t.Errorf("want 100 images of 10 classes, got %d images, classes %v", fresh.Total, fresh.Classes)
	}
	l := fresh.Latency
	if l.Samples != 2*fresh.Total || l.TotalP50Ms <= 0 || l.TotalP99Ms < l.TotalP50Ms || l.InferenceP50Ms <= 0 || l.InferenceP99Ms < l.InferenceP50Ms {
		t.Errorf("latency %+v", l)
	}
	r := report.Latency
	if r.Samples == 0 || r.TotalP50Ms <= 0 || r.MeasuredOn == "" {
		t.Errorf("the committed report has no latency: %+v", r)
	}
	t.Logf("accuracy %.4f (%d/%d); committed latency p50 %.3f ms, p99 %.3f ms on %s", report.Accuracy, report.Correct, report.Total, r.TotalP50Ms, r.TotalP99Ms, r.MeasuredOn)
}

// The evaluation set is the first ten images of each class in training's
// held-out list, each giving exactly its dataset JPEG's model input; the
// evaluator, run on the whole held-out set, gives the confusion matrix
// training measured (artifacts/metrics.json), and on the set's images the
// report's answers. Needs the dataset beside the repository ($PLANETS_DATA
// or ../shared/datasets/planets): in the full tier a missing dataset fails (internal/testenv).
func TestReportMatchesTrainingOnTheHeldOutImages(t *testing.T) {
	root := testruntime.ModuleRoot(t)
	data := testenv.NeedDataset(t, filepath.Dir(root))
	model := testruntime.LoadModel(t, 1)
	opts := committed(t)
	report, err := evaluate.Read(opts.ReportPath)
	if err != nil {
		t.Fatal(err)
	}

	// The held-out list, and the first ten of each class.
	f, err := os.Open(filepath.Join(root, "artifacts", "heldout.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var heldout, wantSet []string
	perClass := map[string]int{}
	for lines := bufio.NewScanner(f); lines.Scan(); {
		rel := strings.TrimSpace(lines.Text())
		heldout = append(heldout, rel)
		class := path.Base(path.Dir(rel))
		if perClass[class]++; perClass[class] <= 10 {
			wantSet = append(wantSet, class+"/"+strings.TrimSuffix(path.Base(rel), ".jpg")+".png")
		}
	}
	set, err := evaluate.LoadSet(opts.EvalDir)
	if err != nil {
		t.Fatal(err)
	}
	var gotSet []string
	for _, img := range set.Images {
		gotSet = append(gotSet, img.File)
	}
	slices.Sort(wantSet)
	if !slices.Equal(gotSet, wantSet) {
		t.Fatalf("eval/ holds %v, want the first ten a class of heldout.txt: %v", gotSet, wantSet)
	}

	// Every held-out JPEG, through the evaluator's own path.
	heldSet := &evaluate.Set{Dir: filepath.Join(data, "raw")}
	for _, rel := range heldout {
		raw, err := os.ReadFile(filepath.Join(data, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		heldSet.Images = append(heldSet.Images, evaluate.Image{File: strings.TrimPrefix(rel, "raw/"), Label: path.Base(path.Dir(rel)), Data: raw})
	}
	full, err := evaluate.Evaluate(context.Background(), model, opts.ModelPath, heldSet, evaluate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var metrics struct {
		Accuracy  float64 `json:"heldout_accuracy"`
		SHA256    string  `json:"model_sha256"`
		Confusion struct {
			Labels []string `json:"labels"`
			Rows   [][]int  `json:"rows_true_cols_predicted"`
		} `json:"confusion_matrix"`
	}
	raw, err := os.ReadFile(filepath.Join(root, "artifacts", "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &metrics); err != nil {
		t.Fatal(err)
	}
	if metrics.SHA256 != report.Model.SHA256 {
		t.Fatalf("metrics.json is of model %s, the report of %s", metrics.SHA256, report.Model.SHA256)
	}
	if !slices.Equal(full.Confusion.Labels, metrics.Confusion.Labels) || fmt.Sprint(full.Confusion.Rows) != fmt.Sprint(metrics.Confusion.Rows) {
		t.Errorf("on the %d held-out images the evaluator's confusion matrix is\n%v\ntraining measured\n%v", full.Total, full.Confusion.Rows, metrics.Confusion.Rows)
	}
	t.Logf("held-out: %d/%d right (training: %.4f); evaluation set: %d/%d", full.Correct, full.Total, metrics.Accuracy, report.Correct, report.Total)

	// The set's images are their JPEGs' model inputs, so the report's
	// answers are the answers on those held-out images.
	byFile := map[string]evaluate.Answer{}
	for _, a := range full.Images {
		byFile[strings.TrimSuffix(a.File, ".jpg")] = a
	}
	for i, img := range set.Images {
		name := strings.TrimSuffix(img.File, ".png")
		jpeg, err := os.ReadFile(filepath.Join(data, "raw", filepath.FromSlash(name)+".jpg"))
		if err != nil {
			t.Fatal(err)
		}
		want, got := make([]float32, preprocess.Len), make([]float32, preprocess.Len)
		if err := preprocess.Tensor(context.Background(), jpeg, evaluate.Limits, want); err != nil {
			t.Fatal(err)
		}
		if err := preprocess.Tensor(context.Background(), img.Data, evaluate.Limits, got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(want, got) {
			t.Errorf("%s does not give the model input of %s.jpg", img.File, name)
		}
		if a := byFile[name]; a.Predicted != report.Images[i].Predicted || a.Probability != report.Images[i].Probability {
			t.Errorf("%s: the report says %s (p %v), the held-out JPEG gets %s (p %v)", img.File, report.Images[i].Predicted, report.Images[i].Probability, a.Predicted, a.Probability)
		}
	}
}
