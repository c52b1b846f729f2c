// Package classifier runs the planet CNN with onnxruntime.
//
// An onnxruntime session with pre-bound tensors is not safe for concurrent
// Run calls, so the Classifier keeps a small pool of sessions, one per
// worker; each runs single-threaded, because the model is tiny and
// onnxruntime's own thread pools would only fight the HTTP server for the
// cores.
package classifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/planets-mlops/deploy/model/internal/preprocess"
)

// Names of the graph's input and output, as training/train.py exports them.
const (
	inputName  = "input"
	outputName = "logits"
)

var initOnce struct {
	sync.Mutex
	done bool
}

// InitRuntime loads the onnxruntime shared library. It is process-wide and
// may be called more than once with the same path.
func InitRuntime(libraryPath string) error {
	initOnce.Lock()
	defer initOnce.Unlock()
	if initOnce.done {
		return nil
	}
	ort.SetSharedLibraryPath(libraryPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelWarning()); err != nil {
		return fmt.Errorf("load onnxruntime from %q: %w", libraryPath, err)
	}
	initOnce.done = true
	return nil
}

// RuntimeVersion reports the loaded onnxruntime version.
func RuntimeVersion() string { return ort.GetVersion() }

type worker struct {
	session *ort.AdvancedSession
	input   *ort.Tensor[float32]
	output  *ort.Tensor[float32]
}

// Classifier is a loaded model. It is safe for concurrent use.
type Classifier struct {
	labels  []string
	workers chan *worker
	all     []*worker
}

// Prediction is one image's result.
type Prediction struct {
	Label         string
	Probabilities []float32 // in Labels() order, softmax of the logits
}

// Load reads the model at path and opens sessions sessions of it. The labels
// come from the model's "labels" metadata (a JSON list).
func Load(path string, sessions int) (*Classifier, error) {
	if sessions < 1 {
		sessions = 1
	}
	labels, err := readLabels(path)
	if err != nil {
		return nil, err
	}
	if err := checkSignature(path, len(labels)); err != nil {
		return nil, err
	}
	c := &Classifier{labels: labels, workers: make(chan *worker, sessions)}
	for range sessions {
		w, err := newWorker(path, len(labels))
		if err != nil {
			c.Close()
			return nil, err
		}
		c.all = append(c.all, w)
		c.workers <- w
	}
	return c, nil
}

func readLabels(path string) ([]string, error) {
	meta, err := ort.GetModelMetadata(path)
	if err != nil {
		return nil, fmt.Errorf("model %q: onnxruntime cannot load it (corrupt, truncated or not ONNX): %w", path, err)
	}
	defer meta.Destroy()
	raw, ok, err := meta.LookupCustomMetadataMap("labels")
	if err != nil {
		return nil, fmt.Errorf("read labels of %q: %w", path, err)
	}
	if !ok {
		return nil, fmt.Errorf("model %q has no \"labels\" metadata", path)
	}
	var labels []string
	if err := json.Unmarshal([]byte(raw), &labels); err != nil || len(labels) == 0 {
		return nil, fmt.Errorf("model %q: labels metadata %q is not a non-empty JSON list", path, raw)
	}
	seen := map[string]bool{}
	for _, label := range labels {
		if label == "" || seen[label] {
			return nil, fmt.Errorf("model %q: labels metadata %q has an empty or repeated label %q; want distinct class names", path, raw, label)
		}
		seen[label] = true
	}
	return labels, nil
}

// checkSignature checks the graph's input and output against what the
// server feeds and reads: one float tensor "input" of [batch, 1, Side, Side]
// and one float tensor "logits" of [batch, classes], classes being the
// number of labels. A model exported otherwise would fail at the first
// request, or answer with the wrong labels; this says what is wrong at load.
func checkSignature(path string, classes int) error {
	inputs, outputs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return fmt.Errorf("read model %q: %w", path, err)
	}
	check := func(what, name string, infos []ort.InputOutputInfo, want ort.Shape) error {
		if len(infos) != 1 || infos[0].Name != name {
			names := make([]string, len(infos))
			for i, info := range infos {
				names[i] = info.Name
			}
			return fmt.Errorf("model %q has %s %q, want one named %q", path, what, names, name)
		}
		info := infos[0]
		if info.OrtValueType != ort.ONNXTypeTensor || info.DataType != ort.TensorElementDataTypeFloat {
			return fmt.Errorf("model %q: %s %q is %s, want a float tensor", path, what, name, info.String())
		}
		got := info.Dimensions
		ok := len(got) == len(want)
		for i := 0; ok && i < len(got); i++ {
			// The batch axis may be dynamic (-1, or 0 when onnxruntime
			// does not know it); every other axis must be what the server uses.
			ok = got[i] == want[i] || (i == 0 && got[i] <= 0)
		}
		if !ok {
			return fmt.Errorf("model %q: %s %q has shape %v, want %v (batch first)", path, what, name, got, want)
		}
		return nil
	}
	if err := check("input", inputName, inputs, ort.NewShape(1, 1, preprocess.Side, preprocess.Side)); err != nil {
		return err
	}
	if err := check("output", outputName, outputs, ort.NewShape(1, int64(classes))); err != nil {
		if len(outputs) == 1 && len(outputs[0].Dimensions) == 2 && outputs[0].Dimensions[1] != int64(classes) {
			return fmt.Errorf("model %q: output %q has %d classes, but its labels metadata names %d", path, outputName, outputs[0].Dimensions[1], classes)
		}
		return err
	}
	return nil
}

func newWorker(path string, classes int) (*worker, error) {
	input, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 1, preprocess.Side, preprocess.Side))
	if err != nil {
		return nil, err
	}
	output, err := ort.NewEmptyTensor[float32](ort.NewShape(1, int64(classes)))
	if err != nil {
		input.Destroy()
		return nil, err
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		input.Destroy()
		output.Destroy()
		return nil, err
	}
	defer opts.Destroy()
	err = errors.Join(opts.SetIntraOpNumThreads(1), opts.SetInterOpNumThreads(1))
	var session *ort.AdvancedSession
	if err == nil {
		session, err = ort.NewAdvancedSession(path, []string{inputName}, []string{outputName},
			[]ort.Value{input}, []ort.Value{output}, opts)
	}
	if err != nil {
		input.Destroy()
		output.Destroy()
		return nil, fmt.Errorf("open model %q: %w", path, err)
	}
	return &worker{session: session, input: input, output: output}, nil
}

// Labels returns the class names in output order.
func (c *Classifier) Labels() []string { return c.labels }

// Predict classifies one preprocessed input (preprocess.Len values). It waits
// for a free session until ctx is done.
func (c *Classifier) Predict(ctx context.Context, input []float32) (Prediction, error) {
	if len(input) != preprocess.Len {
		return Prediction{}, fmt.Errorf("input has %d values, want %d", len(input), preprocess.Len)
	}
	var w *worker
	select {
	case w = <-c.workers:
	case <-ctx.Done():
		return Prediction{}, ctx.Err()
	}
	defer func() { c.workers <- w }()
	copy(w.input.GetData(), input)
	if err := w.session.Run(); err != nil {
		return Prediction{}, fmt.Errorf("run model: %w", err)
	}
	probs := Softmax(w.output.GetData())
	best := 0
	for i, p := range probs {
		if p > probs[best] {
			best = i
		}
	}
	return Prediction{Label: c.labels[best], Probabilities: probs}, nil
}

// Softmax returns a new slice with the softmax of logits, computed in
// float64 with the maximum subtracted for stability.
func Softmax(logits []float32) []float32 {
	maxLogit := math.Inf(-1)
	for _, v := range logits {
		maxLogit = math.Max(maxLogit, float64(v))
	}
	exps := make([]float64, len(logits))
	var sum float64
	for i, v := range logits {
		exps[i] = math.Exp(float64(v) - maxLogit)
		sum += exps[i]
	}
	out := make([]float32, len(logits))
	for i, e := range exps {
		out[i] = float32(e / sum)
	}
	return out
}

// Close releases the sessions. No Predict may run during or after Close.
func (c *Classifier) Close() error {
	var errs []error
	for _, w := range c.all {
		errs = append(errs, w.session.Destroy(), w.input.Destroy(), w.output.Destroy())
	}
	c.all = nil
	return errors.Join(errs...)
}
