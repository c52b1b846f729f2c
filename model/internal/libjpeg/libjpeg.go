// Package libjpeg decodes JPEG with libjpeg-turbo (cgo; the Debian package
// libjpeg62-turbo-dev, linked statically), the library Pillow decodes with
// on the training side, so both sides get the same samples by construction.
//
// For a YCbCr (or gray) JPEG the result is the luma plane alone: libjpeg
// skips the chroma components' inverse DCT and upsampling. Every decode
// reads the header first and refuses images over the pixel limit before
// any pixel is decoded; it stops after a bounded number of scans (a small
// progressive file can otherwise repeat scans over a large image for
// minutes) and as soon as its context is done.
package libjpeg

/*
#cgo LDFLAGS: -l:libjpeg.a
#include <malloc.h>
#include <stdlib.h>
#include "decode.h"

// Large blocks (libjpeg's coefficient buffers, its output) are mmapped and
// go back to the system when freed. glibc's default raises this threshold
// after the first large free, and from then on keeps such blocks in its
// per-thread arenas: cgo calls run on many threads, and the process's
// memory would grow by a decode's worth per arena.
static void plj_init(void) { mallopt(M_MMAP_THRESHOLD, 256 * 1024); }
*/
import "C"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"sync/atomic"
	"unsafe"
)

func init() { C.plj_init() }

// Options bound one decode.
type Options struct {
	// MaxPixels refuses larger images from their header alone.
	MaxPixels int64
	// MaxScans stops files with more scans (progressive JPEGs have about
	// ten; djpeg's -maxscans is the same bound).
	MaxScans int
	// MaxMemory bounds libjpeg's whole-image coefficient buffers (progressive
	// and multi-scan files), in bytes.
	MaxMemory int64
	// Color decodes a YCbCr JPEG to RGB (an *image.RGBA) rather than to its
	// luma plane: what a colour model takes.
	Color bool
}

var (
	// ErrTooManyPixels: the header announces more than Options.MaxPixels.
	ErrTooManyPixels = errors.New("too many pixels")
	// ErrTooManyScans: the file has more than Options.MaxScans scans.
	ErrTooManyScans = errors.New("too many scans")
	// ErrCorrupt: libjpeg refused the data (truncated, corrupt, not a JPEG).
	ErrCorrupt = errors.New("corrupt JPEG")
	// ErrUnsupported: a colour space other than gray, YCbCr, RGB, CMYK, YCCK.
	ErrUnsupported = errors.New("unsupported JPEG colour space")
)

// Decode decodes data: an *image.Gray for gray and YCbCr JPEGs (the luma
// plane; with Options.Color, YCbCr gives an *image.RGBA), an *image.RGBA for RGB ones, an *image.CMYK for CMYK and YCCK
// ones (Adobe's inverted samples put right). A context that is done stops
// the decode with the context's error.
func Decode(ctx context.Context, data []byte, opts Options) (image.Image, error) {
	var img image.Image
	err := View(ctx, data, opts, func(view image.Image) {
		switch v := view.(type) {
		case *image.Gray:
			img = &image.Gray{Pix: bytes.Clone(v.Pix), Stride: v.Stride, Rect: v.Rect}
		case *image.RGBA:
			img = &image.RGBA{Pix: bytes.Clone(v.Pix), Stride: v.Stride, Rect: v.Rect}
		case *image.CMYK:
			img = &image.CMYK{Pix: bytes.Clone(v.Pix), Stride: v.Stride, Rect: v.Rect}
		}
	})
	return img, err
}

// View decodes data as Decode does and calls use with the image, whose
// pixels are libjpeg's own buffer: valid only during the call, and not
// copied into Go memory at all.
func View(ctx context.Context, data []byte, opts Options, use func(image.Image)) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty", ErrCorrupt)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// cancel is read by libjpeg's progress monitor on every row it reads.
	cancel := new(C.int)
	stop := context.AfterFunc(ctx, func() { atomic.StoreInt32((*int32)(unsafe.Pointer(cancel)), 1) })
	defer stop()

	var res C.plj_result
	color := 0
	if opts.Color {
		color = 1
	}
	C.plj_decode((*C.uchar)(unsafe.Pointer(&data[0])), C.size_t(len(data)), C.longlong(opts.MaxPixels),
		C.int(opts.MaxScans), C.long(opts.MaxMemory), C.int(color), cancel, &res)
	if res.pix != nil {
		defer C.free(unsafe.Pointer(res.pix))
	}
	width, height := int(res.width), int(res.height)
	switch res.code {
	case C.PLJ_OK:
	case C.PLJ_ERR_TOO_MANY_PIXELS:
		return fmt.Errorf("%w: %dx%d = %d pixels, limit is %d", ErrTooManyPixels, width, height, int64(width)*int64(height), opts.MaxPixels)
	case C.PLJ_ERR_TOO_MANY_SCANS:
		return fmt.Errorf("%w: more than %d scans", ErrTooManyScans, opts.MaxScans)
	case C.PLJ_ERR_CANCELLED:
		if err := ctx.Err(); err != nil {
			return err
		}
		return context.Canceled
	case C.PLJ_ERR_COLOR_SPACE:
		return fmt.Errorf("%w (%d components)", ErrUnsupported, int(res.components))
	case C.PLJ_ERR_NO_MEMORY:
		return fmt.Errorf("decoding a %dx%d JPEG: out of memory", width, height)
	default:
		return fmt.Errorf("%w: %s", ErrCorrupt, C.GoString(&res.msg[0]))
	}

	rect := image.Rect(0, 0, width, height)
	bytesPerPixel := 4
	if res.out == C.PLJ_OUT_GRAY {
		bytesPerPixel = 1
	}
	pix := unsafe.Slice((*byte)(unsafe.Pointer(res.pix)), width*height*bytesPerPixel)
	switch res.out {
	case C.PLJ_OUT_GRAY:
		use(&image.Gray{Pix: pix, Stride: width, Rect: rect})
	case C.PLJ_OUT_RGBA:
		use(&image.RGBA{Pix: pix, Stride: 4 * width, Rect: rect})
	default:
		if res.adobe != 0 { // Adobe stores CMYK inverted
			for i, v := range pix {
				pix[i] = 255 - v
			}
		}
		use(&image.CMYK{Pix: pix, Stride: 4 * width, Rect: rect})
	}
	return nil
}
