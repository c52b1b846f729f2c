// Package classifier runs an image classifier with onnxruntime, fed and
// read as its declaration says (internal/contract).
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
	"slices"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/planets-mlops/deploy/model/internal/contract"
	"github.com/planets-mlops/deploy/model/internal/preprocess"
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
	contract *contract.Contract
	labels   []string
	workers  chan *worker
	all      []*worker
}

// Prediction is one image's result.
type Prediction struct {
	Label         string
	Probabilities []float32 // in Labels() order: softmax of the logits, or the model's probabilities
}

// Load reads the model at path and its declaration (contract.Path: model.json
// beside it), checks one against the other, and opens sessions sessions of
// the model. Errors are one line naming the file and, for the
// declaration, the field.
func Load(path string, sessions int) (*Classifier, error) {
	return LoadDeclared(path, contract.Path(path), sessions)
}

// LoadDeclared is Load with the declaration at declPath.
func LoadDeclared(path, declPath string, sessions int) (*Classifier, error) {
	if sessions < 1 {
		sessions = 1
	}
	metadataLabels, err := readLabels(path)
	if err != nil {
		return nil, err
	}
	decl, err := contract.Read(declPath)
	if err != nil {
		return nil, err
	}
	inputs, outputs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, fmt.Errorf("read model %q: %w", path, err)
	}
	ct, err := contract.Resolve(decl, declPath, tensors(inputs), tensors(outputs), metadataLabels)
	if err != nil {
		return nil, err
	}
	c := &Classifier{contract: ct, labels: ct.Labels, workers: make(chan *worker, sessions)}
	for range sessions {
		w, err := newWorker(path, ct)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.all = append(c.all, w)
		c.workers <- w
	}
	return c, nil
}

func tensors(infos []ort.InputOutputInfo) []contract.Tensor {
	out := make([]contract.Tensor, len(infos))
	for i, info := range infos {
		out[i] = contract.Tensor{
			Name:  info.Name,
			Float: info.OrtValueType == ort.ONNXTypeTensor && info.DataType == ort.TensorElementDataTypeFloat,
			Dims:  info.Dimensions,
		}
	}
	return out
}

// readLabels reads the model's optional "labels" metadata (a JSON list; nil
// when absent), which training/ writes and the declaration must repeat.
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
		return nil, nil
	}
	var labels []string
	if err := json.Unmarshal([]byte(raw), &labels); err != nil || len(labels) == 0 {
		return nil, fmt.Errorf("model %q: labels metadata %q is not a non-empty JSON list", path, raw)
	}
	return labels, nil
}

func newWorker(path string, ct *contract.Contract) (*worker, error) {
	input, err := ort.NewEmptyTensor[float32](ort.NewShape(ct.Spec.Shape()...))
	if err != nil {
		return nil, err
	}
	output, err := ort.NewEmptyTensor[float32](ort.NewShape(1, int64(len(ct.Labels))))
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
		session, err = ort.NewAdvancedSession(path, []string{ct.Input}, []string{ct.Output},
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

// Input is what the model takes: the preprocessing its declaration and
// graph call for.
func (c *Classifier) Input() preprocess.Spec { return c.contract.Spec }

// Contract is the model's checked declaration.
func (c *Classifier) Contract() *contract.Contract { return c.contract }

// Predict classifies one preprocessed input (Input().Len() values). It
// waits for a free session until ctx is done.
func (c *Classifier) Predict(ctx context.Context, input []float32) (Prediction, error) {
	if n := c.contract.Spec.Len(); len(input) != n {
		return Prediction{}, fmt.Errorf("input has %d values, want %d", len(input), n)
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
	var probs []float32
	if c.contract.Probabilities {
		probs = slices.Clone(w.output.GetData())
	} else {
		probs = Softmax(w.output.GetData())
	}
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
