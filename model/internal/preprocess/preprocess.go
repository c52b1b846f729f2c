// Package preprocess turns an encoded image into the classifier's input
// tensor, exactly as training/planets.py does it in numpy:
//
//  1. decode (PNG, JPEG or GIF; for GIF the first frame);
//  2. grayscale in float64 on the 0..255 scale: for a YCbCr JPEG the decoded
//     luma plane Y itself (JFIF's Y is already 0.299R+0.587G+0.114B, and
//     taking it avoids chroma upsampling, where decoders differ); for a gray
//     image its value; for anything else 0.299R + 0.587G + 0.114B of the
//     8-bit, non-premultiplied colour (alpha is ignored, as Pillow does);
//  3. resize to 32x32 by exact area averaging: output pixel o of an axis of
//     n source pixels covers [o*n/32, (o+1)*n/32) and each source pixel is
//     weighted by the length of its overlap with that span (integer
//     arithmetic in 1/32 pixel units, so both sides compute the same
//     weights);
//  4. divide by 255 and store as float32, row-major, shape [1, 1, 32, 32].
//
// The training code defines the same steps explicitly rather than relying
// on Pillow's resize and convert, whose rounding and antialiasing Go could
// not reproduce to the last bit.
package preprocess

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // registers GIF with image.Decode
	_ "image/png" // registers PNG with image.Decode

	"github.com/planets-mlops/deploy/model/internal/jpeg"
)

// jpegMagic starts every JPEG file. JPEG is decoded by internal/jpeg (the
// standard decoder with libjpeg's IDCT), never by the standard library's
// image/jpeg, which this module must not import (it would register itself).
const jpegMagic = "\xff\xd8"

func decodeConfig(data []byte) (image.Config, string, error) {
	if bytes.HasPrefix(data, []byte(jpegMagic)) {
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
		return cfg, "jpeg", err
	}
	return image.DecodeConfig(bytes.NewReader(data))
}

func decode(data []byte) (image.Image, error) {
	if bytes.HasPrefix(data, []byte(jpegMagic)) {
		return jpeg.DecodeLuma(data) // only Y is used: skip chroma's IDCT
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	return img, err
}

// Side is the edge length of the model's square input.
const Side = 32

// Len is the number of float32 values in one input tensor.
const Len = Side * Side

var (
	// ErrUnsupportedFormat means the bytes are not PNG, JPEG or GIF.
	ErrUnsupportedFormat = errors.New("unsupported image format (want PNG, JPEG or GIF)")
	// ErrTooManyPixels means the header announces more pixels than allowed;
	// it is checked before decoding so a decompression bomb costs nothing.
	ErrTooManyPixels = errors.New("image has too many pixels")
	// ErrInvalidImage means the bytes claim a known format but do not decode
	// (truncated, corrupt, zero-sized).
	ErrInvalidImage = errors.New("invalid image")
)

// Decode decodes data after checking, from its header alone, that the image
// has at most maxPixels pixels. It returns the format name ("png", "jpeg",
// "gif"). Errors wrap ErrUnsupportedFormat, ErrTooManyPixels or
// ErrInvalidImage.
func Decode(data []byte, maxPixels int64) (image.Image, string, error) {
	cfg, format, err := decodeConfig(data)
	if errors.Is(err, image.ErrFormat) {
		return nil, "", ErrUnsupportedFormat
	}
	if err != nil {
		return nil, format, fmt.Errorf("%w: %s header: %v", ErrInvalidImage, format, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, format, fmt.Errorf("%w: %s is %dx%d", ErrInvalidImage, format, cfg.Width, cfg.Height)
	}
	if pixels := int64(cfg.Width) * int64(cfg.Height); pixels > maxPixels {
		return nil, format, fmt.Errorf("%w: %s is %dx%d = %d pixels, limit is %d",
			ErrTooManyPixels, format, cfg.Width, cfg.Height, pixels, maxPixels)
	}
	img, err := decode(data)
	if err != nil {
		return nil, format, fmt.Errorf("%w: %s: %v", ErrInvalidImage, format, err)
	}
	b := img.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return nil, format, fmt.Errorf("%w: %s decodes to an empty image", ErrInvalidImage, format)
	}
	return img, format, nil
}

// Luma coefficients of ITU-R BT.601, as in JFIF.
const (
	lumaR = 0.299
	lumaG = 0.587
	lumaB = 0.114
)

// Gray returns the image's grayscale values (0..255, row-major) and its size.
func Gray(img image.Image) (pix []float64, width, height int) {
	b := img.Bounds()
	width, height = b.Dx(), b.Dy()
	pix = make([]float64, width*height)
	switch src := img.(type) {
	case *image.YCbCr:
		for y := 0; y < height; y++ {
			row := src.Y[src.YOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < width; x++ {
				pix[y*width+x] = float64(row[x])
			}
		}
	case *image.Gray:
		for y := 0; y < height; y++ {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < width; x++ {
				pix[y*width+x] = float64(row[x])
			}
		}
	case *image.NRGBA:
		for y := 0; y < height; y++ {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < width; x++ {
				p := row[4*x : 4*x+3]
				pix[y*width+x] = luma(p[0], p[1], p[2])
			}
		}
	case *image.Paletted:
		lut := make([]float64, len(src.Palette))
		for i, c := range src.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			lut[i] = luma(n.R, n.G, n.B)
		}
		for y := 0; y < height; y++ {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < width; x++ {
				if i := int(row[x]); i < len(lut) {
					pix[y*width+x] = lut[i]
				} // an index outside the palette reads as black
			}
		}
	default:
		// Gray16, NRGBA64, RGBA, CMYK, ...: go through 8-bit NRGBA, the
		// colour Pillow would hand the training code.
		for y := 0; y < height; y++ {
			for x := 0; x < width; x++ {
				n := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				pix[y*width+x] = luma(n.R, n.G, n.B)
			}
		}
	}
	return pix, width, height
}

func luma(r, g, b uint8) float64 {
	return lumaR*float64(r) + lumaG*float64(g) + lumaB*float64(b)
}

// spans holds, for an axis of n source pixels, the area-averaging weights of
// each of the Side output pixels: output o averages source pixels
// first[o] .. first[o]+count[o]-1 with weights[offset[o]:].
type spans struct {
	first, count, offset [Side]int
	weights              []float64
}

// areaSpans computes the spans of an n-pixel axis. Positions are counted in
// 1/Side source pixels so that the overlaps are exact integers.
func areaSpans(n int) *spans {
	s := &spans{weights: make([]float64, 0, n+2*Side)}
	for o := range Side {
		start, end := o*n, (o+1)*n // in 1/Side pixel units
		first, last := start/Side, (end-1)/Side
		s.first[o], s.count[o], s.offset[o] = first, last-first+1, len(s.weights)
		for j := first; j <= last; j++ {
			overlap := min(end, (j+1)*Side) - max(start, j*Side)
			s.weights = append(s.weights, float64(overlap)/float64(n))
		}
	}
	return s
}

// horizontal area-averages one source row into Side values.
func horizontal[T uint8 | float64](row []T, xs *spans, out []float64) {
	for o := range Side {
		src := row[xs.first[o] : xs.first[o]+xs.count[o]]
		w := xs.weights[xs.offset[o] : xs.offset[o]+xs.count[o]]
		var sum float64
		for k, v := range src {
			sum += w[k] * float64(v)
		}
		out[o] = sum
	}
}

// accumulate adds source row y, already reduced horizontally, to the output
// rows whose span covers it, with that row's weight in each.
func (ys *spans) accumulate(y, n int, row *[Side]float64, acc *[Len]float64) {
	// Output o covers [o*n/Side, (o+1)*n/Side): those meeting [y, y+1).
	for o := max(0, y*Side/n-1); o < Side && ys.first[o] <= y; o++ {
		k := y - ys.first[o]
		if k >= ys.count[o] {
			continue
		}
		w := ys.weights[ys.offset[o]+k]
		out := acc[o*Side : (o+1)*Side]
		for x, v := range row {
			out[x] += w * v
		}
	}
}

// finish scales the accumulated sums to [0,1] as float32.
func finish(acc *[Len]float64, dst []float32) {
	for i, v := range acc {
		dst[i] = float32(v / 255)
	}
}

// Resize area-averages a width x height grayscale image (float64, 0..255)
// to Side x Side, scales it to [0,1] and writes it into dst (Len values).
// Each row is reduced horizontally first, then spread over the output rows
// (the same sums training computes as Wy @ (G @ Wx^T)).
func Resize(gray []float64, width, height int, dst []float32) {
	xs, ys := areaSpans(width), areaSpans(height)
	var acc [Len]float64
	var row [Side]float64
	for y := range height {
		horizontal(gray[y*width:(y+1)*width], xs, row[:])
		ys.accumulate(y, height, &row, &acc)
	}
	finish(&acc, dst)
}

// resizePlane is Resize for an 8-bit plane with a stride, which spares the
// float64 copy of the image for gray and JPEG (luma) images.
func resizePlane(pix []uint8, stride, width, height int, dst []float32) {
	xs, ys := areaSpans(width), areaSpans(height)
	var acc [Len]float64
	var row [Side]float64
	for y := range height {
		horizontal(pix[y*stride:y*stride+width], xs, row[:])
		ys.accumulate(y, height, &row, &acc)
	}
	finish(&acc, dst)
}

// Into writes the model input for img into dst (Len values).
func Into(img image.Image, dst []float32) {
	b := img.Bounds()
	switch src := img.(type) {
	case *image.Gray:
		resizePlane(src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, b.Dx(), b.Dy(), dst)
	case *image.YCbCr:
		resizePlane(src.Y[src.YOffset(b.Min.X, b.Min.Y):], src.YStride, b.Dx(), b.Dy(), dst)
	default:
		gray, w, h := Gray(img)
		Resize(gray, w, h, dst)
	}
}

// Tensor decodes data and returns the model input for it.
func Tensor(data []byte, maxPixels int64) ([]float32, error) {
	img, _, err := Decode(data, maxPixels)
	if err != nil {
		return nil, err
	}
	dst := make([]float32, Len)
	Into(img, dst)
	return dst, nil
}
