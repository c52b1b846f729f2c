// Package evaluate measures a model on the evaluation set (eval/: a few
// held-out images a class) with the server's own decoding, preprocessing
// and classifier, and writes or checks the model's report
// (artifacts/report.json): accuracy, recall per class, the confusion matrix,
// each image's answer, the model's size, labels and SHA-256, and the time
// an image takes.
//
// The report is what the deploy program gates on (it has no onnxruntime)
// and what a pull request's comment compares; the image build re-evaluates
// the set with the very files it ships and fails when its answers differ
// from the committed report (Check), so the report cannot lie.
package evaluate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/contract"
	"github.com/planets-mlops/deploy/model/internal/preprocess"
)

// Format names the report's schema; the deploy program refuses any other.
const Format = "planets-model-report/v1"

// Limits are the server's default decoding limits (main.go), so the set is
// decoded as a request is.
var Limits = preprocess.Limits{MaxPixels: 4 << 20, MaxJPEGScans: 100}

// Report is artifacts/report.json.
type Report struct {
	Format string    `json:"format"`
	Model  ModelInfo `json:"model"`
	// Declaration is the model's declaration (internal/contract) the set
	// was evaluated with: another declaration feeds the model otherwise.
	Declaration *DeclarationInfo `json:"declaration,omitempty"`
	EvalSet     SetInfo          `json:"eval_set"`
	// Accuracy is Correct / Total over the whole set.
	Accuracy float64 `json:"accuracy"`
	Correct  int     `json:"correct"`
	Total    int     `json:"total"`
	// Classes are the set's classes in label order, each with its recall.
	Classes   []ClassRecall `json:"classes"`
	Confusion Confusion     `json:"confusion"`
	Latency   Latency       `json:"latency"`
	Images    []Answer      `json:"images"`
}

// ModelInfo identifies the model file.
type ModelInfo struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
	// MD5 is set for a model DVC tracks (cmd/evaluate -md5): DVC's content
	// address, by which the deploy program matches the report to dvc.lock
	// without the model's bytes.
	MD5    string   `json:"md5,omitempty"`
	Labels []string `json:"labels"`
}

// DeclarationInfo identifies the declaration file.
type DeclarationInfo struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// SetInfo identifies the evaluation set: its SHA-256 covers every file's
// path and content.
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

// Confusion counts answers: Rows[true][predicted], in Labels order.
type Confusion struct {
	Labels []string `json:"labels"`
	Rows   [][]int  `json:"rows_true_cols_predicted"`
}

// Latency is the time one image takes on one worker (one session, one
// thread, as a server worker): decoding and preprocessing, inference, and
// both, over Rounds passes of the set. It depends on the machine, named in
// MeasuredOn, so Check never compares it.
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
	File      string `json:"file"`
	Label     string `json:"label"`
	Predicted string `json:"predicted"`
	// Probability is the predicted label's, rounded to 6 digits.
	Probability float64 `json:"probability"`
}

// Image is one image of the set; its label is its directory's name.
type Image struct {
	File  string // slash-separated, relative to the set's directory
	Label string
	Data  []byte
}

// Set is the evaluation set read from a directory of <label>/<image> files.
type Set struct {
	Dir    string
	Images []Image
	SHA256 string
}

// LoadSet reads dir/<label>/<file> for every PNG, JPEG and GIF, in path order.
func LoadSet(dir string) (*Set, error) {
	s := &Set{Dir: dir}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch strings.ToLower(path.Ext(rel)) {
		case ".png", ".jpg", ".jpeg", ".gif":
		default:
			return nil // README and the like
		}
		label, _, nested := strings.Cut(rel, "/")
		if !nested || strings.Contains(rel[len(label)+1:], "/") {
			return fmt.Errorf("evaluation set %s: %s is not <label>/<image>", dir, rel)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s.Images = append(s.Images, Image{File: rel, Label: label, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("evaluation set %s: %w", dir, err)
	}
	if len(s.Images) == 0 {
		return nil, fmt.Errorf("evaluation set %s has no images; want <label>/<image> files", dir)
	}
	sort.Slice(s.Images, func(i, j int) bool { return s.Images[i].File < s.Images[j].File })
	h := sha256.New()
	for _, img := range s.Images {
		sum := sha256.Sum256(img.Data)
		fmt.Fprintf(h, "%s\x00%x\x00", img.File, sum)
	}
	s.SHA256 = hex.EncodeToString(h.Sum(nil))
	return s, nil
}

// Options configure Evaluate.
type Options struct {
	// Rounds is how many timed passes over the set measure the latency;
	// 0 measures none (Check).
	Rounds int
	// ModelName is the model's file as the report names it.
	ModelName string
}

// Evaluate answers every image of set with model (loaded from modelPath)
// and, with opts.Rounds, times opts.Rounds more passes.
func Evaluate(ctx context.Context, model *classifier.Classifier, modelPath string, set *Set, opts Options) (*Report, error) {
	raw, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	name := opts.ModelName
	if name == "" {
		name = filepath.Base(modelPath)
	}
	declPath := contract.Path(modelPath)
	declRaw, err := os.ReadFile(declPath)
	if err != nil {
		return nil, err
	}
	declSum := sha256.Sum256(declRaw)
	r := &Report{
		Format:      Format,
		Model:       ModelInfo{File: name, SHA256: hex.EncodeToString(sum[:]), Bytes: int64(len(raw)), Labels: model.Labels()},
		Declaration: &DeclarationInfo{File: contract.FileName, SHA256: hex.EncodeToString(declSum[:])},
		EvalSet:     SetInfo{Dir: filepath.Base(set.Dir), SHA256: set.SHA256, Images: len(set.Images)},
	}
	spec := model.Input()
	input := make([]float32, spec.Len())
	for _, img := range set.Images {
		if err := spec.Tensor(ctx, img.Data, Limits, input); err != nil {
			return nil, fmt.Errorf("evaluation set: %s: %w", img.File, err)
		}
		pred, err := model.Predict(ctx, input)
		if err != nil {
			return nil, fmt.Errorf("evaluation set: %s: %w", img.File, err)
		}
		best := slices.Index(model.Labels(), pred.Label)
		r.Images = append(r.Images, Answer{File: img.File, Label: img.Label, Predicted: pred.Label,
			Probability: math.Round(float64(pred.Probabilities[best])*1e6) / 1e6})
	}
	r.tally()
	if opts.Rounds > 0 {
		if r.Latency, err = measure(ctx, model, set, opts.Rounds); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// tally computes the accuracy, the recall per class and the confusion
// matrix from the answers.
func (r *Report) tally() {
	labels := slices.Clone(r.Model.Labels)
	for _, a := range r.Images {
		if !slices.Contains(labels, a.Label) {
			labels = append(labels, a.Label) // a class the model does not know
		}
	}
	index := map[string]int{}
	for i, l := range labels {
		index[l] = i
	}
	r.Confusion = Confusion{Labels: labels, Rows: make([][]int, len(labels))}
	for i := range r.Confusion.Rows {
		r.Confusion.Rows[i] = make([]int, len(labels))
	}
	r.Correct, r.Total = 0, len(r.Images)
	for _, a := range r.Images {
		r.Confusion.Rows[index[a.Label]][index[a.Predicted]]++
		if a.Predicted == a.Label {
			r.Correct++
		}
	}
	r.Accuracy = ratio(r.Correct, r.Total)
	r.Classes = nil
	for i, l := range labels {
		total := 0
		for _, n := range r.Confusion.Rows[i] {
			total += n
		}
		if total == 0 {
			continue // a label with no image in the set
		}
		correct := r.Confusion.Rows[i][i]
		r.Classes = append(r.Classes, ClassRecall{Label: l, Correct: correct, Total: total, Recall: ratio(correct, total)})
	}
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(float64(a)/float64(b)*1e6) / 1e6
}

// measure times rounds passes over the set, image by image.
func measure(ctx context.Context, model *classifier.Classifier, set *Set, rounds int) (Latency, error) {
	spec := model.Input()
	input := make([]float32, spec.Len())
	var pre, inf, total []time.Duration
	for range rounds {
		for _, img := range set.Images {
			start := time.Now()
			if err := spec.Tensor(ctx, img.Data, Limits, input); err != nil {
				return Latency{}, err
			}
			mid := time.Now()
			if _, err := model.Predict(ctx, input); err != nil {
				return Latency{}, err
			}
			end := time.Now()
			pre, inf, total = append(pre, mid.Sub(start)), append(inf, end.Sub(mid)), append(total, end.Sub(start))
		}
	}
	l := Latency{Rounds: rounds, Samples: len(total), MeasuredOn: machine()}
	l.PreprocessP50Ms, l.PreprocessP99Ms = percentiles(pre)
	l.InferenceP50Ms, l.InferenceP99Ms = percentiles(inf)
	l.TotalP50Ms, l.TotalP99Ms = percentiles(total)
	return l, nil
}

// percentiles are the nearest-rank 50th and 99th, in milliseconds to the µs.
func percentiles(d []time.Duration) (p50, p99 float64) {
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(d)))) - 1
		return math.Round(float64(d[max(i, 0)].Nanoseconds())/1e3) / 1e3
	}
	return at(0.50), at(0.99)
}

// machine names what the latency was measured on.
func machine() string {
	cpu := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(info), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs, %s/%s, onnxruntime %s, one session on one thread", cpu, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, classifier.RuntimeVersion())
}

// Read reads a report, refusing another format and unknown fields.
func Read(path string) (*Report, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("report %s: %w", path, err)
	}
	if r.Format != Format {
		return nil, fmt.Errorf("report %s: format %q, want %q", path, r.Format, Format)
	}
	return &r, nil
}

// Write writes the report as indented JSON.
func (r *Report) Write(path string) error {
	raw, err := r.JSON()
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}

// Differences lists how fresh differs from committed, latency aside, as
// short phrases (at most a few images named); nil when it does not.
// Probabilities may differ by 1e-4 (another CPU's kernels round otherwise).
func Differences(committed, fresh *Report) []string {
	var diffs []string
	if committed.Model.SHA256 != fresh.Model.SHA256 || committed.Model.Bytes != fresh.Model.Bytes {
		diffs = append(diffs, fmt.Sprintf("it is of another model (sha256 %s, %d bytes; this one is %s, %d bytes)",
			committed.Model.SHA256, committed.Model.Bytes, fresh.Model.SHA256, fresh.Model.Bytes))
	}
	if committed.Declaration == nil || fresh.Declaration == nil || *committed.Declaration != *fresh.Declaration {
		diffs = append(diffs, fmt.Sprintf("it was made with another declaration (%+v; this one is %+v)", committed.Declaration, fresh.Declaration))
	}
	if !slices.Equal(committed.Model.Labels, fresh.Model.Labels) {
		diffs = append(diffs, fmt.Sprintf("it names the labels %q, the model has %q", committed.Model.Labels, fresh.Model.Labels))
	}
	if committed.EvalSet.SHA256 != fresh.EvalSet.SHA256 || committed.EvalSet.Images != fresh.EvalSet.Images {
		diffs = append(diffs, fmt.Sprintf("it is of another evaluation set (%d images, sha256 %s; this one has %d, %s)",
			committed.EvalSet.Images, committed.EvalSet.SHA256, fresh.EvalSet.Images, fresh.EvalSet.SHA256))
	}
	if len(diffs) > 0 {
		return diffs
	}
	var wrong []string
	for i, a := range fresh.Images {
		if i >= len(committed.Images) {
			break
		}
		c := committed.Images[i]
		if c.File != a.File || c.Label != a.Label || c.Predicted != a.Predicted || math.Abs(c.Probability-a.Probability) > 1e-4 {
			wrong = append(wrong, fmt.Sprintf("%s: it says %s (p %.4f), the model answers %s (p %.4f)", a.File, c.Predicted, c.Probability, a.Predicted, a.Probability))
		}
	}
	if len(committed.Images) != len(fresh.Images) {
		wrong = append(wrong, fmt.Sprintf("it lists %d answers, the set has %d images", len(committed.Images), len(fresh.Images)))
	}
	if len(wrong) > 3 {
		wrong = append(wrong[:3], fmt.Sprintf("and %d more", len(wrong)-3))
	}
	diffs = append(diffs, wrong...)
	if len(diffs) == 0 {
		// Same answers: the figures must follow from them.
		recount := *committed
		recount.Images = slices.Clone(committed.Images)
		recount.tally()
		if committed.Correct != recount.Correct || committed.Total != recount.Total || committed.Accuracy != recount.Accuracy ||
			!slices.Equal(committed.Classes, recount.Classes) || fmt.Sprint(committed.Confusion) != fmt.Sprint(recount.Confusion) {
			diffs = append(diffs, fmt.Sprintf("its figures do not follow from its answers (accuracy %v, %d/%d; the answers give %v, %d/%d)",
				committed.Accuracy, committed.Correct, committed.Total, recount.Accuracy, recount.Correct, recount.Total))
		}
	}
	return diffs
}

// ErrCheck marks a failed Check.
var ErrCheck = errors.New("model check failed")

// JSON is the report as Write writes it.
func (r *Report) JSON() ([]byte, error) {
	raw, err := json.MarshalIndent(r, "", "  ")
	return append(raw, '\n'), err
}
