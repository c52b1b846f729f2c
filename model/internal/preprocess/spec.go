package preprocess

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"

	"github.com/planets-mlops/deploy/model/internal/libjpeg"
)

// Layout is the order of a model input's axes.
type Layout uint8

const (
	// NCHW is [batch, channels, height, width] (PyTorch's order).
	NCHW Layout = iota
	// NHWC is [batch, height, width, channels] (Keras's order).
	NHWC
)

func (l Layout) String() string {
	if l == NHWC {
		return "NHWC"
	}
	return "NCHW"
}

// Method is how an image is resized to the model's input.
type Method uint8

const (
	// Area is exact area averaging (the training code's; see the package
	// comment).
	Area Method = iota
	// Bilinear is TensorFlow's tf.image.resize(method="bilinear",
	// antialias=False): half-pixel centres, source position
	// (o + 0.5) * in/out - 0.5, clamped to the image, linear between the two
	// nearest pixels. PyTorch's interpolate(mode="bilinear",
	// align_corners=False, antialias=False) computes the same.
	Bilinear
)

func (m Method) String() string {
	if m == Bilinear {
		return "bilinear"
	}
	return "area"
}

// Spec says what input tensor a model takes: its size, channels (1:
// grayscale as described in the package comment; 3: RGB, alpha ignored),
// layout, resize method and value range. The values are v/255 (0..1), or
// with Std set (v/255 - Mean[c]) / Std[c].
type Spec struct {
	Width, Height int
	Channels      int
	Layout        Layout
	Resize        Method
	Mean, Std     []float32 // one per channel, or both nil for 0..1
}

// Default is the planet classifier's input: [N, 1, 32, 32], grayscale,
// area-averaged, 0..1.
var Default = Spec{Width: Side, Height: Side, Channels: 1, Layout: NCHW, Resize: Area}

// Len is the number of float32 values in one input tensor.
func (s Spec) Len() int { return s.Width * s.Height * s.Channels }

// Shape is the input tensor's shape with a batch of one.
func (s Spec) Shape() []int64 {
	if s.Layout == NHWC {
		return []int64{1, int64(s.Height), int64(s.Width), int64(s.Channels)}
	}
	return []int64{1, int64(s.Channels), int64(s.Height), int64(s.Width)}
}

func (s Spec) String() string {
	rng := "0..1"
	if s.Std != nil {
		rng = fmt.Sprintf("mean %v std %v", s.Mean, s.Std)
	}
	return fmt.Sprintf("%s %v, %d channel(s), %s resize, %s", s.Layout, s.Shape(), s.Channels, s.Resize, rng)
}

// fast reports whether s is Default up to the layout, which for one channel
// does not change the memory order: the tuned path of Tensor.
func (s Spec) fast() bool {
	return s.Width == Side && s.Height == Side && s.Channels == 1 && s.Resize == Area && s.Std == nil
}

// Tensor decodes data and writes the input s describes into dst (s.Len()
// values). Errors are Decode's.
func (s Spec) Tensor(ctx context.Context, data []byte, limits Limits, dst []float32) error {
	if s.fast() {
		return Tensor(ctx, data, limits, dst)
	}
	if bytes.HasPrefix(data, []byte(jpegMagic)) {
		opts := limits.jpeg()
		opts.Color = s.Channels == 3
		err := libjpeg.View(ctx, data, opts, func(img image.Image) { s.Into(img, dst) })
		return jpegError(ctx, err, limits)
	}
	img, _, err := Decode(ctx, data, limits)
	if err != nil {
		return err
	}
	s.Into(img, dst)
	return nil
}

// Into writes the input s describes for img into dst (s.Len() values).
func (s Spec) Into(img image.Image, dst []float32) {
	if s.fast() {
		Into(img, dst)
		return
	}
	b := img.Bounds()
	width, height := b.Dx(), b.Dy()
	xs, ys := s.taps(width, s.Width), s.taps(height, s.Height)
	bySource := ys.bySource()
	planes := s.Channels
	acc := make([]float64, planes*s.Width*s.Height)
	src := make([][]float64, planes)
	row := make([][]float64, planes)
	for c := range planes {
		src[c] = make([]float64, width)
		row[c] = make([]float64, s.Width)
	}
	var rows func(y int, out [][]float64)
	if planes == 1 {
		gray := grayRows(img)
		rows = func(y int, out [][]float64) { gray(y, out[0]) }
	} else {
		rows = rgbRows(img)
	}
	next := 0
	for y := range height {
		if next >= len(bySource) || bySource[next].source != y {
			continue // no output row reads this one (bilinear downscaling)
		}
		rows(y, src)
		for c := range planes {
			xs.apply(src[c], row[c])
		}
		for ; next < len(bySource) && bySource[next].source == y; next++ {
			t := bySource[next]
			for c := range planes {
				out := acc[(c*s.Height+t.out)*s.Width:][:s.Width]
				for x, v := range row[c] {
					out[x] += t.weight * v
				}
			}
		}
	}
	s.store(acc, dst)
}

// store scales the planes in acc (0..255, channel-major) and writes them
// into dst in s's layout.
func (s Spec) store(acc []float64, dst []float32) {
	n := s.Width * s.Height
	for c := range s.Channels {
		mean, std := 0.0, 1.0
		if s.Std != nil {
			mean, std = float64(s.Mean[c]), float64(s.Std[c])
		}
		plane := acc[c*n : (c+1)*n]
		for i, v := range plane {
			value := float32((v/255 - mean) / std)
			if s.Layout == NHWC {
				dst[i*s.Channels+c] = value
			} else {
				dst[c*n+i] = value
			}
		}
	}
}

// tap is one source pixel's weight in one output pixel.
type tap struct {
	out, source int
	weight      float64
}

// axisTaps are the taps of one axis, in output order.
type axisTaps []tap

// taps computes the resize weights of an axis of n source pixels to out
// output pixels.
func (s Spec) taps(n, out int) axisTaps {
	var ts axisTaps
	if s.Resize == Bilinear {
		scale := float64(n) / float64(out)
		for o := range out {
			// TensorFlow's HalfPixelScaler and compute_interpolation_weights:
			// lower = max(floor(in), 0), upper = min(ceil(in), n-1),
			// lerp = in - floor(in). For in < 0 both are pixel 0.
			in := (float64(o)+0.5)*scale - 0.5
			floor := math.Floor(in)
			lower, upper := max(int(floor), 0), min(int(math.Ceil(in)), n-1)
			lerp := in - floor
			if lower == upper {
				ts = append(ts, tap{o, lower, 1})
				continue
			}
			ts = append(ts, tap{o, lower, 1 - lerp}, tap{o, upper, lerp})
		}
		return ts
	}
	// Area: output o covers [o*n/out, (o+1)*n/out); positions in 1/out
	// source pixels, so overlaps are exact integers (as areaSpans).
	for o := range out {
		start, end := o*n, (o+1)*n
		for j := start / out; j <= (end-1)/out; j++ {
			overlap := min(end, (j+1)*out) - max(start, j*out)
			ts = append(ts, tap{o, j, float64(overlap) / float64(n)})
		}
	}
	return ts
}

// apply resizes one row: out[o] = sum of weight * src[source].
func (ts axisTaps) apply(src, out []float64) {
	clear(out)
	for _, t := range ts {
		out[t.out] += t.weight * src[t.source]
	}
}

// bySource is the taps in source order (then output order), for one pass
// over the source rows.
func (ts axisTaps) bySource() axisTaps {
	sorted := slices.Clone(ts)
	slices.SortStableFunc(sorted, func(a, b tap) int { return a.source - b.source })
	return sorted
}

// rgbRows returns a function that writes row y of img's 8-bit RGB values
// (non-premultiplied; alpha ignored, as Pillow's convert("RGB") and
// TensorFlow's decode_image(channels=3) do) into out[0..2].
func rgbRows(img image.Image) func(y int, out [][]float64) {
	b := img.Bounds()
	switch src := img.(type) {
	case *image.Gray:
		return func(y int, out [][]float64) {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range out[0] {
				v := float64(row[x])
				out[0][x], out[1][x], out[2][x] = v, v, v
			}
		}
	case *image.RGBA:
		if src.Opaque() {
			return func(y int, out [][]float64) {
				row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
				for x := range out[0] {
					p := row[4*x : 4*x+3]
					out[0][x], out[1][x], out[2][x] = float64(p[0]), float64(p[1]), float64(p[2])
				}
			}
		}
	case *image.NRGBA:
		return func(y int, out [][]float64) {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range out[0] {
				p := row[4*x : 4*x+3]
				out[0][x], out[1][x], out[2][x] = float64(p[0]), float64(p[1]), float64(p[2])
			}
		}
	}
	// Anything else: through 8-bit NRGBA (16-bit: the high byte).
	return func(y int, out [][]float64) {
		for x := range out[0] {
			n := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			out[0][x], out[1][x], out[2][x] = float64(n.R), float64(n.G), float64(n.B)
		}
	}
}
