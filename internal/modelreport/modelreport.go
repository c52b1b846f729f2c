// Package modelreport reads the model's report (model/artifacts/report.json,
// written by `go run ./cmd/evaluate` in model/ with the server's own
// decoding, preprocessing and onnxruntime), checks that it is the report of
// the model file beside it, and gates a deployment on it: a model whose
// accuracy on the evaluation set is below mlops:minAccuracy, or fell by
// more than mlops:maxAccuracyDrop from the default branch's model, stops
// the preview and the deploy before anything is declared.
//
// The program needs no onnxruntime for this: it trusts the report's
// figures because the image build re-evaluates the set with the very files
// it ships and fails when they differ from the report (model/Dockerfile,
// `server -check`), and it checks here that the report is of this model
// (its SHA-256 and size), so a stale report is refused loudly.
package modelreport

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Format is the schema model/internal/evaluate writes.
const Format = "planets-model-report/v1"

// Path is the report's place in the model's build context, ModelPath the
// model's and DeclarationPath its declaration's (model/internal/contract:
// how the server feeds the model and reads it, and its labels).
const (
	Path            = "artifacts/report.json"
	ModelPath       = "artifacts/planets.onnx"
	DeclarationPath = "artifacts/model.json"
)

// Report is model/artifacts/report.json (see model/internal/evaluate).
type Report struct {
	Format      string           `json:"format"`
	Model       ModelInfo        `json:"model"`
	Declaration *DeclarationInfo `json:"declaration,omitempty"`
	EvalSet     SetInfo          `json:"eval_set"`
	Accuracy    float64          `json:"accuracy"`
	Correct     int              `json:"correct"`
	Total       int              `json:"total"`
	Classes     []ClassRecall    `json:"classes"`
	Confusion   Confusion        `json:"confusion"`
	Latency     Latency          `json:"latency"`
	Images      []Answer         `json:"images"`
}

// ModelInfo identifies the model file.
type ModelInfo struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	// MD5 is the model's MD5, DVC's content address: the report of a model
	// tracked by DVC names it by the hash dvc.lock (or its .dvc file)
	// records, so the gate holds without the model's bytes.
	MD5    string   `json:"md5,omitempty"`
	Bytes  int64    `json:"bytes"`
	Labels []string `json:"labels"`
}

// DeclarationInfo identifies the model's declaration the report was made
// with.
type DeclarationInfo struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// SetInfo identifies the evaluation set.
type SetInfo struct {
	Dir    string `json:"dir"`
	SHA256 string `json:"sha256"`
	Images int    `json:"images"`
}

// ClassRecall is one class's share of its images answered right.
type ClassRecall struct {
	Label   string  `json:"label"`
	Correct int     `json:"correct"`
	Total   int     `json:"total"`
	Recall  float64 `json:"recall"`
}

// Confusion counts answers: Rows[true][predicted].
type Confusion struct {
	Labels []string `json:"labels"`
	Rows   [][]int  `json:"rows_true_cols_predicted"`
}

// Latency is the time an image takes on one worker, on MeasuredOn.
type Latency struct {
	Rounds          int     `json:"rounds"`
	Samples         int     `json:"samples"`
	PreprocessP50Ms float64 `json:"preprocess_p50_ms"`
	PreprocessP99Ms float64 `json:"preprocess_p99_ms"`
	InferenceP50Ms  float64 `json:"inference_p50_ms"`
	InferenceP99Ms  float64 `json:"inference_p99_ms"`
	TotalP50Ms      float64 `json:"total_p50_ms"`
	TotalP99Ms      float64 `json:"total_p99_ms"`
	MeasuredOn      string  `json:"measured_on"`
}

// Answer is the model's answer for one image of the set.
type Answer struct {
	File        string  `json:"file"`
	Label       string  `json:"label"`
	Predicted   string  `json:"predicted"`
	Probability float64 `json:"probability"`
}

// Recall is the class's recall, and whether the report has the class.
func (r *Report) Recall(label string) (ClassRecall, bool) {
	i := slices.IndexFunc(r.Classes, func(c ClassRecall) bool { return c.Label == label })
	if i < 0 {
		return ClassRecall{}, false
	}
	return r.Classes[i], true
}

// Decode reads a report, refusing another format and unknown fields: a
// report this program does not fully understand must not gate anything.
func Decode(r io.Reader, name string) (*Report, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var rep Report
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("model report %s: %w", name, err)
	}
	if rep.Format != Format {
		return nil, fmt.Errorf("model report %s: format %q, want %q (regenerate it: go run ./cmd/evaluate in model/)", name, rep.Format, Format)
	}
	if rep.Total <= 0 || len(rep.Classes) == 0 || rep.Correct < 0 || rep.Correct > rep.Total {
		return nil, fmt.Errorf("model report %s: %d of %d images right, %d classes: not an evaluation", name, rep.Correct, rep.Total, len(rep.Classes))
	}
	return &rep, nil
}

// ReadFile reads the report at path.
func ReadFile(path string) (*Report, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Decode(bytes.NewReader(raw), path)
}

// ForModel reads the report of the model in modelDir (the image's build
// context) and checks that it is this model's: its SHA-256 and size. A
// missing or stale report is an error saying how to make it.
func ForModel(modelDir string) (*Report, error) {
	reportPath := filepath.Join(modelDir, filepath.FromSlash(Path))
	modelPath := filepath.Join(modelDir, filepath.FromSlash(ModelPath))
	regenerate := fmt.Sprintf("run `go run ./cmd/evaluate` in %s (export ONNXRUNTIME_LIB=$(model/hack/onnxruntime.sh) first) and commit %s with the model", modelDir, Path)
	r, err := ReadFile(reportPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("model gate: %s has no report (%s); %s", modelPath, reportPath, regenerate)
	}
	if err != nil {
		return nil, fmt.Errorf("model gate: %w; %s", err, regenerate)
	}
	raw, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, fmt.Errorf("model gate: %w", err)
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != r.Model.SHA256 || int64(len(raw)) != r.Model.Bytes {
		return nil, fmt.Errorf("model gate: %s is the report of another model (sha256 %s, %d bytes) than %s (sha256 %s, %d bytes): its figures say nothing of this one; %s",
			reportPath, r.Model.SHA256, r.Model.Bytes, modelPath, got, len(raw), regenerate)
	}
	if r.Model.MD5 != "" {
		if got := fmt.Sprintf("%x", md5.Sum(raw)); got != r.Model.MD5 {
			return nil, fmt.Errorf("model gate: %s gives model.md5 %s, and %s has md5 %s: the report contradicts itself; %s", reportPath, r.Model.MD5, modelPath, got, regenerate)
		}
	}
	if err := checkDeclaration(modelDir, r, regenerate); err != nil {
		return nil, err
	}
	return r, nil
}

// ForDVCOutput reads the report of the model in modelDir whose file DVC
// tracks (recordedIn, with md5 and size) and checks that it is this
// model's by the hash DVC recorded: the model's bytes are not needed, so a
// preview downloads nothing. The image build's own check (model/Dockerfile,
// `server -check`) then holds the report's SHA-256 to the fetched bytes.
func ForDVCOutput(modelDir, md5 string, size int64, recordedIn string) (*Report, error) {
	reportPath := filepath.Join(modelDir, filepath.FromSlash(Path))
	regenerate := fmt.Sprintf("run `go run ./cmd/evaluate` in %s on the model (dvc pull it first) and commit %s, with the model's md5 as %s records it", modelDir, Path, recordedIn)
	r, err := ReadFile(reportPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("model gate: the model DVC tracks (%s, md5 %s) has no report (%s); %s", recordedIn, md5, reportPath, regenerate)
	}
	if err != nil {
		return nil, fmt.Errorf("model gate: %w; %s", err, regenerate)
	}
	switch {
	case r.Model.MD5 == "":
		return nil, fmt.Errorf("model gate: %s names its model by sha256 only, and the model is DVC's (%s, md5 %s): expected the report to carry model.md5 too; %s", reportPath, recordedIn, md5, regenerate)
	case r.Model.MD5 != md5 || r.Model.Bytes != size:
		return nil, fmt.Errorf("model gate: %s is the report of another model (md5 %s, %d bytes) than the one %s records (md5 %s, %d bytes): its figures say nothing of this one; %s",
			reportPath, r.Model.MD5, r.Model.Bytes, recordedIn, md5, size, regenerate)
	}
	if err := checkDeclaration(modelDir, r, regenerate); err != nil {
		return nil, err
	}
	return r, nil
}

// checkDeclaration checks that the model's declaration is there, is the
// one the report was made with, and names the report's labels. (The image
// build checks it against the graph: `server -check`.)
func checkDeclaration(modelDir string, r *Report, regenerate string) error {
	declPath := filepath.Join(modelDir, filepath.FromSlash(DeclarationPath))
	raw, err := os.ReadFile(declPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("model gate: %s has no declaration (%s); write it (docs/bring-your-own-model.md, or model/cmd/package), then %s", filepath.Join(modelDir, filepath.FromSlash(ModelPath)), declPath, regenerate)
	}
	if err != nil {
		return fmt.Errorf("model gate: %w", err)
	}
	var decl struct {
		Labels []string `json:"labels"`
	}
	if err := json.Unmarshal(raw, &decl); err != nil {
		return fmt.Errorf("model gate: declaration %s: %v; want the JSON object model/internal/contract reads", declPath, err)
	}
	sum := sha256.Sum256(raw)
	if r.Declaration == nil || r.Declaration.SHA256 != hex.EncodeToString(sum[:]) {
		return fmt.Errorf("model gate: %s was not made with the declaration %s (sha256 %x): the model may be fed otherwise than it was evaluated; %s", Path, declPath, sum, regenerate)
	}
	if !slices.Equal(decl.Labels, r.Model.Labels) {
		return fmt.Errorf("model gate: declaration %s: labels: %q, but the report names %q; %s", declPath, decl.Labels, r.Model.Labels, regenerate)
	}
	return nil
}

// Gate is the stack's thresholds (mlops:minAccuracy, mlops:maxAccuracyDrop).
type Gate struct {
	// MinAccuracy is the least accuracy on the evaluation set, 0 to 1; 0
	// lets any model through.
	MinAccuracy float64
	// MaxAccuracyDrop is how much the accuracy may fall from the
	// baseline's, 0 to 1; 1 lets any drop through.
	MaxAccuracyDrop float64
}

// eps absorbs the rounding of figures written to 6 digits.
const eps = 1e-9

// Check returns an error naming each setting the model fails, its figure
// and the classes that fell; nil when it passes. baseline is the default
// branch's report, or nil (the drop is then not checked).
func (g Gate) Check(r, baseline *Report, baselineName string) error {
	var problems []string
	if r.Accuracy+eps < g.MinAccuracy {
		var below []string
		for _, c := range r.Classes {
			if c.Recall+eps < g.MinAccuracy {
				below = append(below, fmt.Sprintf("%s %s (%d/%d)", c.Label, percent(c.Recall), c.Correct, c.Total))
			}
		}
		problems = append(problems, fmt.Sprintf("mlops:minAccuracy is %s, and the model's accuracy on the evaluation set is %s (%d/%d); classes below %s: %s",
			percent(g.MinAccuracy), percent(r.Accuracy), r.Correct, r.Total, percent(g.MinAccuracy), orNone(below)))
	}
	if baseline != nil {
		if drop := baseline.Accuracy - r.Accuracy; drop > g.MaxAccuracyDrop+eps {
			var fell []string
			for _, c := range Worse(baseline, r) {
				fell = append(fell, fmt.Sprintf("%s %s -> %s", c.Label, percent(c.Old.Recall), percent(c.New.Recall)))
			}
			problems = append(problems, fmt.Sprintf("mlops:maxAccuracyDrop is %s, and the accuracy fell by %s, from %s (%s, model sha256 %.12s) to %s; classes that got worse: %s",
				percent(g.MaxAccuracyDrop), percent(drop), percent(baseline.Accuracy), baselineName, baseline.Model.SHA256, percent(r.Accuracy), orNone(fell)))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("model gate: the model %s (sha256 %.12s) is refused, nothing was changed:\n- %s\nTo deploy it anyway on purpose, lower the setting for this stack (pulumi config set mlops:minAccuracy 0, or mlops:maxAccuracyDrop 1) in a reviewed commit",
		r.Model.File, r.Model.SHA256, strings.Join(problems, "\n- "))
}

// ClassChange is one class's recall in two reports.
type ClassChange struct {
	Label    string
	Old, New ClassRecall
}

// Worse are the classes whose recall fell from old to new, most fallen
// first (classes only new has are not compared).
func Worse(old, new *Report) []ClassChange {
	var out []ClassChange
	for _, n := range new.Classes {
		if o, ok := old.Recall(n.Label); ok && n.Recall+eps < o.Recall {
			out = append(out, ClassChange{Label: n.Label, Old: o, New: n})
		}
	}
	slices.SortStableFunc(out, func(a, b ClassChange) int {
		da, db := a.Old.Recall-a.New.Recall, b.Old.Recall-b.New.Recall
		switch {
		case da > db:
			return -1
		case da < db:
			return 1
		}
		return 0
	})
	return out
}

func percent(v float64) string { return fmt.Sprintf("%.1f%%", v*100) }

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
