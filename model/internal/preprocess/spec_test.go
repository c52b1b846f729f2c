package preprocess_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/planets-mlops/deploy/model/internal/preprocess"
)

var specLimits = preprocess.Limits{MaxPixels: 1 << 22, MaxJPEGScans: 100}

// resizeFixtures are model/testdata/resize: PNGs and, for each of them,
// channels (1, 3), resize (area, bilinear) and size, the NCHW input from the
// Python reference (training/make_resize_fixtures.py: PyTorch's bilinear
// interpolate, checked there against tf.image.resize's documented output).
type resizeFixtures struct {
	Cases []struct {
		File     string    `json:"file"`
		Channels int       `json:"channels"`
		Resize   string    `json:"resize"`
		Height   int       `json:"height"`
		Width    int       `json:"width"`
		NCHW     []float64 `json:"nchw"`
	} `json:"cases"`
}

func loadResizeFixtures(t *testing.T) resizeFixtures {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "resize", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f resizeFixtures
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) < 32 {
		t.Fatalf("%d cases, want 32", len(f.Cases))
	}
	for _, c := range f.Cases {
		if c.Width <= 0 || c.Height <= 0 || len(c.NCHW) != c.Channels*c.Width*c.Height {
			t.Fatalf("%s: a %dx%d case with %d values", c.File, c.Width, c.Height, len(c.NCHW))
		}
	}
	return f
}

// Every declared mode (gray or RGB, area or bilinear, either layout) gives
// the Python reference's input within 1e-6 (the fixture's rounding).
func TestSpecMatchesThePythonReference(t *testing.T) {
	for _, c := range loadResizeFixtures(t).Cases {
		data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "resize", c.File))
		if err != nil {
			t.Fatal(err)
		}
		for _, layout := range []preprocess.Layout{preprocess.NCHW, preprocess.NHWC} {
			spec := preprocess.Spec{Width: c.Width, Height: c.Height, Channels: c.Channels, Layout: layout, Resize: preprocess.Area}
			if c.Resize == "bilinear" {
				spec.Resize = preprocess.Bilinear
			}
			got := make([]float32, spec.Len())
			if err := spec.Tensor(context.Background(), data, specLimits, got); err != nil {
				t.Fatalf("%s %v: %v", c.File, spec, err)
			}
			var worst float64
			n := c.Width * c.Height
			for ch := range c.Channels {
				for i := range n {
					g := got[ch*n+i]
					if layout == preprocess.NHWC {
						g = got[i*c.Channels+ch]
					}
					worst = math.Max(worst, math.Abs(float64(g)-c.NCHW[ch*n+i]))
				}
			}
			if worst > 1.5e-6 {
				t.Errorf("%s %v: max |go - python| = %g, want <= 1.5e-6", c.File, spec, worst)
			}
		}
	}
}

// TensorFlow's documented example of tf.image.resize (bilinear, no
// antialias): a 5x5 diagonal resized to 3x5.
func TestBilinearMatchesTensorFlowsDocumentedExample(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 5, 5))
	for i := range 5 {
		img.SetGray(i, i, color.Gray{Y: 255})
	}
	spec := preprocess.Spec{Width: 5, Height: 3, Channels: 1, Resize: preprocess.Bilinear}
	got := make([]float32, spec.Len())
	spec.Into(img, got)
	want := []float32{
		0.6666667, 0.3333333, 0, 0, 0,
		0, 0, 1, 0, 0,
		0, 0, 0, 0.3333335, 0.6666665,
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// The general path, asked for the default input, computes what the tuned
// one does: the same weights, the same sums.
func TestSpecGeneralAreaEqualsTheTunedPath(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "resize", "rgb_83x57.png"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tuned := make([]float32, preprocess.Len)
	preprocess.Into(img, tuned)
	// Mean 0, std 1 takes the general path, with the same values.
	general := preprocess.Default
	general.Mean, general.Std = []float32{0}, []float32{1}
	got := make([]float32, general.Len())
	general.Into(img, got)
	for i := range tuned {
		if math.Abs(float64(got[i]-tuned[i])) > 1e-7 {
			t.Fatalf("value %d: general %v, tuned %v", i, got[i], tuned[i])
		}
	}
}

// Mean and std apply per channel after the 0..1 scaling.
func TestSpecMeanStd(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 4, 4))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = 255, 51, 0, 255
	}
	spec := preprocess.Spec{Width: 2, Height: 2, Channels: 3, Layout: preprocess.NHWC, Resize: preprocess.Bilinear,
		Mean: []float32{0.5, 0.2, 0}, Std: []float32{0.5, 0.1, 2}}
	got := make([]float32, spec.Len())
	spec.Into(img, got)
	for p := range 4 {
		px := got[3*p : 3*p+3]
		if math.Abs(float64(px[0]-1)) > 1e-6 || math.Abs(float64(px[1]-0)) > 1e-6 || px[2] != 0 {
			t.Fatalf("pixel %d = %v, want [1 0 0]", p, px)
		}
	}
}

// A colour model gets a JPEG's colours, not its luma.
func TestSpecDecodesJPEGInColour(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "parity", "rgb_131x97_444.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	spec := preprocess.Spec{Width: 8, Height: 8, Channels: 3, Resize: preprocess.Area}
	got := make([]float32, spec.Len())
	if err := spec.Tensor(context.Background(), data, specLimits, got); err != nil {
		t.Fatal(err)
	}
	var differ bool
	for i := range 64 {
		if got[i] != got[64+i] || got[i] != got[128+i] {
			differ = true
		}
	}
	if !differ {
		t.Fatal("the three channels are equal: the JPEG was decoded gray")
	}
}
