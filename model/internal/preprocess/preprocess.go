// Package preprocess turns an encoded image into the classifier's input
// tensor, exactly as training/planets.py does it in numpy:
//
//  1. decode (PNG, JPEG or GIF; for GIF the first frame);
//  2. grayscale in float64 on the 0..255 scale: for a YCbCr JPEG the decoded
//     luma plane Y itself, as libjpeg-turbo decodes it (JFIF's Y is already
//     0.299R+0.587G+0.114B, and taking it avoids chroma upsampling, where
//     decoders differ); for a gray image its value (16-bit: the high byte);
//     for anything else 0.299R + 0.587G + 0.114B of the
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
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // registers GIF with image.Decode
	_ "image/png" // registers PNG with image.Decode
	"strings"

	"github.com/planets-mlops/deploy/model/internal/libjpeg"
)

// jpegMagic starts every JPEG file. JPEG is decoded by libjpeg-turbo
// (internal/libjpeg), never by the standard library's image/jpeg, which
// this module must not import (it would register itself).
const jpegMagic = "\xff\xd8"

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
	// ErrTooManyScans means a JPEG has more scans than allowed: each scan
	// may cost a pass over the whole image.
	ErrTooManyScans = errors.New("JPEG has too many scans")
	// ErrInvalidImage means the bytes claim a known format but do not decode
	// (truncated, corrupt, zero-sized).
	ErrInvalidImage = errors.New("invalid image")
)

// Limits bound the work of one decode.
type Limits struct {
	MaxPixels    int64 // larger images are refused from their header
	MaxJPEGScans int   // JPEGs with more scans are refused
}

// DecodeMemory is an upper bound on the bytes one decode within limits may
// hold: libjpeg's whole-image coefficient buffers (2 bytes a sample, at most
// four full-size components) and its output, or a decoded 16-bit RGBA PNG
// (8 bytes a pixel), plus one row of float64 gray.
func (l Limits) DecodeMemory() int64 { return 9*l.MaxPixels + 1<<20 }

// Decode decodes data after checking, from its header alone, that the image
// has at most limits.MaxPixels pixels. It returns the format name ("png",
// "jpeg", "gif"). Errors wrap ErrUnsupportedFormat, ErrTooManyPixels,
// ErrTooManyScans or ErrInvalidImage, or are the context's error.
func Decode(ctx context.Context, data []byte, limits Limits) (image.Image, string, error) {
	if bytes.HasPrefix(data, []byte(jpegMagic)) {
		return decodeJPEG(ctx, data, limits)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if errors.Is(err, image.ErrFormat) {
		return nil, "", ErrUnsupportedFormat
	}
	if err != nil {
		return nil, format, invalid(format, "header: ", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, format, fmt.Errorf("%w: %s is %dx%d", ErrInvalidImage, format, cfg.Width, cfg.Height)
	}
	if pixels := int64(cfg.Width) * int64(cfg.Height); pixels > limits.MaxPixels {
		return nil, format, fmt.Errorf("%w: %s is %dx%d = %d pixels, limit is %d",
			ErrTooManyPixels, format, cfg.Width, cfg.Height, pixels, limits.MaxPixels)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, format, invalid(format, "", err)
	}
	b := img.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return nil, format, fmt.Errorf("%w: %s decodes to an empty image", ErrInvalidImage, format)
	}
	return img, format, nil
}

// invalid wraps a decoder's error in ErrInvalidImage, naming the format
// once (the standard decoders' messages already start with "png: ", "gif: ").
func invalid(format, what string, err error) error {
	msg := err.Error()
	if !strings.HasPrefix(msg, format+":") {
		msg = format + ": " + msg
	}
	return fmt.Errorf("%w: %s%s", ErrInvalidImage, what, msg)
}

func (l Limits) jpeg() libjpeg.Options {
	return libjpeg.Options{MaxPixels: l.MaxPixels, MaxScans: l.MaxJPEGScans, MaxMemory: l.DecodeMemory()}
}

func decodeJPEG(ctx context.Context, data []byte, limits Limits) (image.Image, string, error) {
	img, err := libjpeg.Decode(ctx, data, limits.jpeg())
	return img, "jpeg", jpegError(ctx, err, limits)
}

// jpegError maps libjpeg's errors to this package's.
func jpegError(ctx context.Context, err error, limits Limits) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, libjpeg.ErrTooManyPixels):
		return fmt.Errorf("%w: jpeg is %s", ErrTooManyPixels, strings.TrimPrefix(err.Error(), libjpeg.ErrTooManyPixels.Error()+": "))
	case errors.Is(err, libjpeg.ErrTooManyScans):
		return fmt.Errorf("%w: more than %d", ErrTooManyScans, limits.MaxJPEGScans)
	case errors.Is(err, libjpeg.ErrUnsupported):
		return fmt.Errorf("%w: %v", ErrUnsupportedFormat, err)
	case ctx.Err() != nil:
		return err
	default:
		return fmt.Errorf("%w: jpeg: %v", ErrInvalidImage, err)
	}
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
	rows := grayRows(img)
	for y := range height {
		rows(y, pix[y*width:(y+1)*width])
	}
	return pix, width, height
}

// grayRows returns a function that writes row y of img's grayscale values
// (0..255) into out: for a gray image its value; for 16-bit gray the high
// byte (v >> 8), as Pillow reduces 16-bit RGB and gray+alpha samples and as
// the training code defines it for 16-bit gray; for anything else
// 0.299R + 0.587G + 0.114B of the 8-bit (16-bit: high byte),
// non-premultiplied colour (alpha is ignored, as Pillow does).
func grayRows(img image.Image) func(y int, out []float64) {
	b := img.Bounds()
	switch src := img.(type) {
	case *image.Gray:
		return func(y int, out []float64) {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range out {
				out[x] = float64(row[x])
			}
		}
	case *image.Gray16:
		return func(y int, out []float64) {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range out {
				out[x] = float64(row[2*x]) // the high byte (big-endian)
			}
		}
	case *image.NRGBA:
		return func(y int, out []float64) {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range out {
				p := row[4*x : 4*x+3]
				out[x] = luma(p[0], p[1], p[2])
			}
		}
	case *image.NRGBA64:
		return func(y int, out []float64) {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range out {
				p := row[8*x : 8*x+6] // big-endian: high bytes at 0, 2, 4
				out[x] = luma(p[0], p[2], p[4])
			}
		}
	case *image.RGBA:
		if !src.Opaque() {
			break // premultiplied: go through NRGBA below
		}
		return func(y int, out []float64) {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range out {
				p := row[4*x : 4*x+3]
				out[x] = luma(p[0], p[1], p[2])
			}
		}
	case *image.RGBA64:
		if !src.Opaque() {
			break
		}
		return func(y int, out []float64) {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range out {
				p := row[8*x : 8*x+6]
				out[x] = luma(p[0], p[2], p[4])
			}
		}
	case *image.Paletted:
		lut := make([]float64, len(src.Palette))
		for i, c := range src.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			lut[i] = luma(n.R, n.G, n.B)
		}
		return func(y int, out []float64) {
			row := src.Pix[src.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range out {
				out[x] = 0 // an index outside the palette reads as black
				if i := int(row[x]); i < len(lut) {
					out[x] = lut[i]
				}
			}
		}
	}
	// Anything else (CMYK, translucent premultiplied colour): through 8-bit
	// NRGBA, the colour Pillow would hand the training code.
	return func(y int, out []float64) {
		for x := range out {
			n := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			out[x] = luma(n.R, n.G, n.B)
		}
	}
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

// blockSide is n/Side when an axis of n pixels splits into Side blocks of a
// power-of-two number of whole pixels (the dataset's 128x128 images: 4),
// else 0. Then every area weight is 1/blockSide, a power of two, so the
// weighted float64 sums are exact whatever their order, and equal to the
// integer block sum divided by the block's area: exactly what the general
// path (and the training code) computes, without a multiplication a pixel.
func blockSide(n int) int {
	m := n / Side
	if n%Side != 0 || m&(m-1) != 0 {
		return 0
	}
	return m
}

// resizeBlocks is resizePlane when both axes split into power-of-two
// blocks: column sums over each band of bh rows, then each band's columns
// summed in groups of bw.
func resizeBlocks(pix []uint8, stride, bw, bh int, dst []float32) {
	width := Side * bw
	cols := make([]uint32, width)
	// The block sum divided by the block's area is exact (a power of two),
	// so dividing once by area x 255 rounds exactly as dividing by each.
	scale := float64(bw * bh * 255)
	lanes := laneSums{even: make([]uint64, width/8), odd: make([]uint64, width/8)}
	for band := range Side {
		rows := pix[band*bh*stride:]
		if bh*255 <= 0xffff {
			lanes.columnSums(rows, stride, bh, cols)
		} else {
			clear(cols)
			for y := range bh {
				row := rows[y*stride:][:len(cols)] // same length: no bounds checks below
				for x := range cols {
					cols[x] += uint32(row[x])
				}
			}
		}
		out := dst[band*Side : (band+1)*Side]
		for o := range out {
			var sum uint32
			for _, c := range cols[o*bw : (o+1)*bw] {
				sum += c
			}
			out[o] = float32(float64(sum) / scale)
		}
	}
}

// laneSums adds rows eight pixels at a time: a 64-bit word of pixels is
// split into its even and odd bytes, each widened to four 16-bit lanes, so
// one addition adds four columns. A lane holds the sum of up to 257 rows
// (257 x 255 < 65536) exactly.
type laneSums struct {
	even, odd []uint64 // lane k of word g: column 8g+2k, and 8g+2k+1
}

// columnSums writes into cols (a multiple of 8 long) the sums of each
// column over the n rows of pix that start stride bytes apart.
func (l laneSums) columnSums(pix []uint8, stride, n int, cols []uint32) {
	clear(l.even)
	clear(l.odd)
	for y := range n {
		row := pix[y*stride:][:len(cols)]
		for g := range l.even {
			v := binary.LittleEndian.Uint64(row[8*g:])
			l.even[g] += v & 0x00ff00ff00ff00ff
			l.odd[g] += v >> 8 & 0x00ff00ff00ff00ff
		}
	}
	for g, even := range l.even {
		odd, c := l.odd[g], cols[8*g:8*g+8]
		for k := range 4 {
			c[2*k] = uint32(even >> (16 * k) & 0xffff)
			c[2*k+1] = uint32(odd >> (16 * k) & 0xffff)
		}
	}
}

// resizePlane is Resize for an 8-bit plane with a stride, which spares the
// float64 conversion for gray and JPEG (luma) images.
func resizePlane(pix []uint8, stride, width, height int, dst []float32) {
	if bw, bh := blockSide(width), blockSide(height); bw > 0 && bh > 0 {
		resizeBlocks(pix, stride, bw, bh, dst)
		return
	}
	xs, ys := areaSpans(width), areaSpans(height)
	var acc [Len]float64
	var row [Side]float64
	for y := range height {
		horizontal(pix[y*stride:y*stride+width], xs, row[:])
		ys.accumulate(y, height, &row, &acc)
	}
	finish(&acc, dst)
}

// resizeRows is Resize for an image whose gray rows come one at a time, so
// that no float64 copy of the whole image is ever held.
func resizeRows(rows func(y int, out []float64), width, height int, dst []float32) {
	xs, ys := areaSpans(width), areaSpans(height)
	var acc [Len]float64
	var row [Side]float64
	gray := make([]float64, width)
	for y := range height {
		rows(y, gray)
		horizontal(gray, xs, row[:])
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
	default:
		resizeRows(grayRows(img), b.Dx(), b.Dy(), dst)
	}
}

// Tensor decodes data and writes the model input for it into dst (Len
// values).
func Tensor(ctx context.Context, data []byte, limits Limits, dst []float32) error {
	if bytes.HasPrefix(data, []byte(jpegMagic)) {
		// Straight from libjpeg's buffer: no copy of the pixels.
		err := libjpeg.View(ctx, data, limits.jpeg(), func(img image.Image) { Into(img, dst) })
		return jpegError(ctx, err, limits)
	}
	img, _, err := Decode(ctx, data, limits)
	if err != nil {
		return err
	}
	Into(img, dst)
	return nil
}
