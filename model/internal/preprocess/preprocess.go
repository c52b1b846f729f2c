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
		return jpeg.Decode(bytes.NewReader(data))
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

// span is one output pixel's share of a source axis.
type span struct {
	first   int       // first source index
	weights []float64 // weights of source pixels first, first+1, ...
}

// areaSpans returns, for an axis of n source pixels, the area-averaging
// weights of each of the Side output pixels. Positions are counted in
// 1/Side source pixels so the overlaps are exact integers.
func areaSpans(n int) [Side]span {
	var spans [Side]span
	for o := range Side {
		start, end := o*n, (o+1)*n // in 1/Side pixel units
		first, last := start/Side, (end-1)/Side
		w := make([]float64, last-first+1)
		for j := first; j <= last; j++ {
			overlap := min(end, (j+1)*Side) - max(start, j*Side)
			w[j-first] = float64(overlap) / float64(n)
		}
		spans[o] = span{first: first, weights: w}
	}
	return spans
}

// Resize area-averages a width x height grayscale image to Side x Side,
// scales it to [0,1] and writes it into dst, which must hold Len values.
func Resize(gray []float64, width, height int, dst []float32) {
	xs, ys := areaSpans(width), areaSpans(height)
	// Horizontal pass first, then vertical: the order training uses.
	rows := make([]float64, height*Side)
	for y := range height {
		src := gray[y*width : (y+1)*width]
		for ox, s := range xs {
			var sum float64
			for k, w := range s.weights {
				sum += w * src[s.first+k]
			}
			rows[y*Side+ox] = sum
		}
	}
	for oy, s := range ys {
		for ox := range Side {
			var sum float64
			for k, w := range s.weights {
				sum += w * rows[(s.first+k)*Side+ox]
			}
			dst[oy*Side+ox] = float32(sum / 255)
		}
	}
}

// Tensor decodes data and returns the model input for it.
func Tensor(data []byte, maxPixels int64) ([]float32, error) {
	img, _, err := Decode(data, maxPixels)
	if err != nil {
		return nil, err
	}
	dst := make([]float32, Len)
	gray, w, h := Gray(img)
	Resize(gray, w, h, dst)
	return dst, nil
}
