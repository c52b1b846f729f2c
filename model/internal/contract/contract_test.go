package contract_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/planets-mlops/deploy/model/internal/contract"
	"github.com/planets-mlops/deploy/model/internal/preprocess"
)

var ten = []string{"Earth", "Jupiter", "Mars", "Mercury", "Moon", "Neptune", "Pluto", "Saturn", "Uranus", "Venus"}

func guide() contract.Declaration {
	return contract.Declaration{Format: contract.Format, Layout: "NHWC", Channels: 1, Range: "0..1", Resize: "bilinear", Output: "logits", Labels: ten}
}

var (
	nhwcInput  = []contract.Tensor{{Name: "conv2d_input", Float: true, Dims: []int64{-1, 32, 32, 1}}}
	nchwInput  = []contract.Tensor{{Name: "input", Float: true, Dims: []int64{-1, 1, 32, 32}}}
	tenOutputs = []contract.Tensor{{Name: "dense_1", Float: true, Dims: []int64{-1, 10}}}
)

// The guide's model (Keras: NHWC, bilinear, logits) resolves to the input
// its graph and declaration describe.
func TestResolveTheGuidesModel(t *testing.T) {
	d := guide()
	c, err := contract.Resolve(&d, "model.json", nhwcInput, tenOutputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := preprocess.Spec{Width: 32, Height: 32, Channels: 1, Layout: preprocess.NHWC, Resize: preprocess.Bilinear}
	if c.Input != "conv2d_input" || c.Output != "dense_1" || c.Probabilities || !slices.Equal(c.Labels, ten) ||
		c.Spec.Width != want.Width || c.Spec.Height != want.Height || c.Spec.Layout != want.Layout || c.Spec.Resize != want.Resize || c.Spec.Std != nil {
		t.Errorf("contract %+v", c)
	}
	rgb := d
	rgb.Channels, rgb.Range, rgb.Mean, rgb.Std, rgb.Layout = 3, "mean_std", []float64{0.5, 0.4, 0.3}, []float64{0.2, 0.2, 0.25}, "NCHW"
	in := []contract.Tensor{{Name: "pixels", Float: true, Dims: []int64{1, 3, 48, 64}}}
	c, err = contract.Resolve(&rgb, "model.json", in, tenOutputs, ten)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Width != 64 || c.Spec.Height != 48 || c.Spec.Channels != 3 || c.Spec.Len() != 3*48*64 || !slices.Equal(c.Spec.Std, []float32{0.2, 0.2, 0.25}) {
		t.Errorf("spec %+v", c.Spec)
	}
}

// A declaration that contradicts the graph is refused with one line that
// names the declaration, the field and what was expected.
func TestResolveNamesTheFieldThatContradictsTheGraph(t *testing.T) {
	for _, tc := range []struct {
		name            string
		edit            func(d *contract.Declaration)
		inputs, outputs []contract.Tensor
		metadata        []string
		want            []string
	}{
		{"NCHW declared, NHWC graph", func(d *contract.Declaration) { d.Layout = "NCHW" }, nhwcInput, tenOutputs, nil,
			[]string{`layout: declared "NCHW"`, "[N,32,32,1]", "axis 1", "is it NHWC?"}},
		{"NHWC declared, NCHW graph", nil, nchwInput, tenOutputs, nil, []string{`layout: declared "NHWC"`, "is it NCHW?"}},
		{"3 channels declared, 1 in the graph", func(d *contract.Declaration) { d.Channels = 3 }, nhwcInput, tenOutputs, nil, []string{"channels: declared 3", "it takes 1"}},
		{"3 labels, 10 outputs", func(d *contract.Declaration) { d.Labels = ten[:3] }, nhwcInput, tenOutputs, nil, []string{"labels: 3 names", `"dense_1" is [N,10]`, "want 10 labels"}},
		{"metadata disagrees", nil, nhwcInput, tenOutputs, append(slices.Clone(ten[1:]), "Earth"), []string{"labels: ", `"labels" metadata names`}},
		{"two inputs", nil, append(slices.Clone(nhwcInput), contract.Tensor{Name: "mask", Float: true, Dims: []int64{1}}), tenOutputs, nil, []string{"input: ", "want exactly one"}},
		{"dynamic size", nil, []contract.Tensor{{Name: "x", Float: true, Dims: []int64{-1, -1, -1, 1}}}, tenOutputs, nil, []string{"input: ", "static height and width"}},
		{"rank 3 output", nil, nhwcInput, []contract.Tensor{{Name: "y", Float: true, Dims: []int64{1, 10, 1}}}, nil, []string{"output: ", "[N, classes]"}},
		{"integer input", nil, []contract.Tensor{{Name: "x", Dims: []int64{-1, 32, 32, 1}}}, tenOutputs, nil, []string{"input: ", "float tensor"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := guide()
			if tc.edit != nil {
				tc.edit(&d)
			}
			_, err := contract.Resolve(&d, "artifacts/model.json", tc.inputs, tc.outputs, tc.metadata)
			if err == nil {
				t.Fatal("resolved")
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append([]string{"declaration artifacts/model.json: "}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not say %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("more than one line")
			}
		})
	}
}

// Read refuses a missing declaration and each wrong field, naming it.
func TestReadNamesTheWrongField(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, contract.FileName)
	if _, err := contract.Read(path); err == nil || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), path) {
		t.Errorf("missing: %v", err)
	}
	for _, tc := range []struct {
		edit func(d *contract.Declaration)
		want string
	}{
		{func(d *contract.Declaration) { d.Format = "v0" }, `format: "v0", want "model-declaration/v1"`},
		{func(d *contract.Declaration) { d.Layout = "HWC" }, `layout: "HWC", want "NCHW" or "NHWC"`},
		{func(d *contract.Declaration) { d.Channels = 4 }, "channels: 4, want 1 (grayscale) or 3 (RGB)"},
		{func(d *contract.Declaration) { d.Range = "0..255" }, `range: "0..255", want "0..1" or "mean_std"`},
		{func(d *contract.Declaration) {
			d.Range, d.Mean, d.Std = "mean_std", []float64{0.5, 0.5, 0.5}, []float64{0.2}
		}, "mean: 3 values, want 1 (one per channel)"},
		{func(d *contract.Declaration) { d.Range, d.Mean, d.Std = "mean_std", []float64{0.5}, []float64{0} }, "std: [0], want positive values"},
		{func(d *contract.Declaration) { d.Mean = []float64{0.5} }, `range: "0..1" with mean/std`},
		{func(d *contract.Declaration) { d.Resize = "nearest" }, `resize: "nearest", want "area" or "bilinear"`},
		{func(d *contract.Declaration) { d.Output = "softmax" }, `output: "softmax", want "logits" or "probabilities"`},
		{func(d *contract.Declaration) { d.Labels = nil }, "labels: none"},
		{func(d *contract.Declaration) { d.Labels = []string{"a", "a"} }, `labels: empty or repeated label "a"`},
	} {
		d := guide()
		tc.edit(&d)
		if err := d.Write(path); err != nil {
			t.Fatal(err)
		}
		_, err := contract.Read(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%v; want it to name %s and say %q", err, path, tc.want)
		}
	}
	if err := os.WriteFile(path, []byte(`{"format":"model-declaration/v1","colour":"rgb"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := contract.Read(path); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("unknown field: %v", err)
	}
}
