// Package contract is the model contract: what the server feeds a model and
// how it reads the answer. The graph tells what it can (the one input's and
// the one output's names, the input's rank, height, width and channel axis,
// the output's number of classes); the declaration, a small JSON file beside
// the model (artifacts/model.json in the build context, /model/model.json in
// the image, so the fingerprint covers it), tells the rest: the layout, the
// channels, the value range, the resize method, logits or probabilities,
// and the labels. Each field the declaration names is checked against the
// graph: a model whose declaration is missing or contradicts its graph is
// refused with one line naming the field and what was expected.
//
// The server, -check, cmd/evaluate and cmd/package read the declaration
// here; the deploy program's gate (internal/modelreport in the root module)
// checks that the report was made with the same declaration.
package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/planets-mlops/deploy/model/internal/preprocess"
)

// Format names the declaration's schema.
const Format = "model-declaration/v1"

// FileName is the declaration's name, in the model file's directory.
const FileName = "model.json"

// Path is the declaration of the model at modelPath: model.json beside it.
func Path(modelPath string) string { return filepath.Join(filepath.Dir(modelPath), FileName) }

// Declaration is model.json. Every field is required except Mean and Std,
// which go with Range "mean_std".
type Declaration struct {
	Format string `json:"format"`
	// Layout is "NCHW" or "NHWC".
	Layout string `json:"layout"`
	// Channels is 1 (grayscale) or 3 (RGB).
	Channels int `json:"channels"`
	// Range is "0..1" (pixel/255) or "mean_std" ((pixel/255 - mean) / std
	// per channel).
	Range string    `json:"range"`
	Mean  []float64 `json:"mean,omitempty"`
	Std   []float64 `json:"std,omitempty"`
	// Resize is "area" (exact area averaging, as training/ does) or
	// "bilinear" (tf.image.resize's: half-pixel centres, no antialias).
	Resize string `json:"resize"`
	// Output is "logits" (the server applies softmax) or "probabilities".
	Output string `json:"output"`
	// Labels are the class names in the output's order.
	Labels []string `json:"labels"`
}

// Tensor is what the graph says of one input or output.
type Tensor struct {
	Name  string
	Float bool    // a float32 tensor
	Dims  []int64 // -1 or 0 for a dynamic axis
}

func (t Tensor) shape() string {
	dims := make([]string, len(t.Dims))
	for i, d := range t.Dims {
		dims[i] = fmt.Sprint(d)
		if d <= 0 {
			dims[i] = "N"
		}
	}
	return "[" + strings.Join(dims, ",") + "]"
}

// Contract is a declaration checked against its graph.
type Contract struct {
	Input, Output string // the graph's tensor names
	Spec          preprocess.Spec
	Probabilities bool // the output is probabilities, not logits
	Labels        []string
}

// Read reads and validates the declaration at path (fields alone; Resolve
// checks them against the graph). Errors are one line naming path and the
// field.
func Read(path string) (*Declaration, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("declaration %s: missing; want the model's declaration (format, layout, channels, range, resize, output, labels) beside it: see docs/bring-your-own-model.md, or make it with cmd/package", path)
	}
	if err != nil {
		return nil, fmt.Errorf("declaration %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var d Declaration
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("declaration %s: %v; want a JSON object with the fields format, layout, channels, range, resize, output, labels", path, err)
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("declaration %s: %w", path, err)
	}
	return &d, nil
}

// Validate checks each field on its own, naming the first that is wrong.
func (d *Declaration) Validate() error {
	switch {
	case d.Format != Format:
		return fmt.Errorf("format: %q, want %q", d.Format, Format)
	case d.Layout != "NCHW" && d.Layout != "NHWC":
		return fmt.Errorf("layout: %q, want \"NCHW\" or \"NHWC\"", d.Layout)
	case d.Channels != 1 && d.Channels != 3:
		return fmt.Errorf("channels: %d, want 1 (grayscale) or 3 (RGB)", d.Channels)
	case d.Resize != "area" && d.Resize != "bilinear":
		return fmt.Errorf("resize: %q, want \"area\" or \"bilinear\"", d.Resize)
	case d.Output != "logits" && d.Output != "probabilities":
		return fmt.Errorf("output: %q, want \"logits\" or \"probabilities\"", d.Output)
	}
	switch d.Range {
	case "0..1":
		if d.Mean != nil || d.Std != nil {
			return fmt.Errorf("range: \"0..1\" with mean/std, want range \"mean_std\" for those, or no mean and std")
		}
	case "mean_std":
		if len(d.Mean) != d.Channels {
			return fmt.Errorf("mean: %d values, want %d (one per channel)", len(d.Mean), d.Channels)
		}
		if len(d.Std) != d.Channels {
			return fmt.Errorf("std: %d values, want %d (one per channel)", len(d.Std), d.Channels)
		}
		for _, s := range d.Std {
			if !(s > 0) {
				return fmt.Errorf("std: %v, want positive values", d.Std)
			}
		}
	default:
		return fmt.Errorf("range: %q, want \"0..1\" or \"mean_std\" (with mean and std)", d.Range)
	}
	if len(d.Labels) == 0 {
		return errors.New("labels: none, want the class names in the output's order")
	}
	seen := map[string]bool{}
	for _, l := range d.Labels {
		if l == "" || seen[l] {
			return fmt.Errorf("labels: empty or repeated label %q, want distinct class names", l)
		}
		seen[l] = true
	}
	return nil
}

// Resolve checks d (read from declPath) against the graph's inputs and
// outputs and returns the contract. metadataLabels, when not nil, are the
// model's own "labels" metadata, which must agree.
func Resolve(d *Declaration, declPath string, inputs, outputs []Tensor, metadataLabels []string) (*Contract, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("declaration %s: %s", declPath, fmt.Sprintf(format, args...))
	}
	names := func(ts []Tensor) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Name)
		}
		return out
	}
	if len(inputs) != 1 {
		return nil, fail("input: the graph has inputs %q, want exactly one image input", names(inputs))
	}
	if len(outputs) != 1 {
		return nil, fail("output: the graph has outputs %q, want exactly one [N, classes] output", names(outputs))
	}
	in, out := inputs[0], outputs[0]
	if !in.Float || len(in.Dims) != 4 {
		return nil, fail("input: %q is %s (float %v), want a float tensor of rank 4 (%s)", in.Name, in.shape(), in.Float, d.Layout)
	}
	channelAxis, hAxis, wAxis := 1, 2, 3
	other := "NHWC"
	if d.Layout == "NHWC" {
		channelAxis, hAxis, wAxis = 3, 1, 2
		other = "NCHW"
	}
	if c := in.Dims[channelAxis]; c != 1 && c != 3 {
		return nil, fail("layout: declared %q, but the input %q is %s: axis %d (the channels in %s) is %d, want 1 or 3; is it %s?",
			d.Layout, in.Name, in.shape(), channelAxis, d.Layout, c, other)
	}
	if c := in.Dims[channelAxis]; c != int64(d.Channels) {
		return nil, fail("channels: declared %d, but the input %q is %s (%s): it takes %d", d.Channels, in.Name, in.shape(), d.Layout, c)
	}
	height, width := in.Dims[hAxis], in.Dims[wAxis]
	if height <= 0 || width <= 0 || height > 4096 || width > 4096 {
		return nil, fail("input: %q is %s: want a static height and width (1 to 4096) in %s", in.Name, in.shape(), d.Layout)
	}
	if !out.Float || len(out.Dims) != 2 || out.Dims[1] <= 0 {
		return nil, fail("output: %q is %s, want a float tensor [N, classes]", out.Name, out.shape())
	}
	if classes := out.Dims[1]; classes != int64(len(d.Labels)) {
		return nil, fail("labels: %d names, but the output %q is %s: want %d labels", len(d.Labels), out.Name, out.shape(), classes)
	}
	if metadataLabels != nil && !slices.Equal(metadataLabels, d.Labels) {
		return nil, fail("labels: %q, but the model's \"labels\" metadata names %q: want the same", d.Labels, metadataLabels)
	}
	spec := preprocess.Spec{Width: int(width), Height: int(height), Channels: d.Channels, Layout: preprocess.NCHW, Resize: preprocess.Area}
	if d.Layout == "NHWC" {
		spec.Layout = preprocess.NHWC
	}
	if d.Resize == "bilinear" {
		spec.Resize = preprocess.Bilinear
	}
	if d.Range == "mean_std" {
		for c := range d.Channels {
			spec.Mean = append(spec.Mean, float32(d.Mean[c]))
			spec.Std = append(spec.Std, float32(d.Std[c]))
		}
	}
	return &Contract{Input: in.Name, Output: out.Name, Spec: spec, Probabilities: d.Output == "probabilities", Labels: slices.Clone(d.Labels)}, nil
}

// Write writes d as indented JSON.
func (d *Declaration) Write(path string) error {
	raw, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}
