package libjpeg_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/model/internal/libjpeg"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

var opts = libjpeg.Options{MaxPixels: 1 << 22, MaxScans: 100, MaxMemory: 64 << 20}

func fixture(t *testing.T, name string) []byte {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "parity", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDecodeGrayFromYCbCr(t *testing.T) {
	for _, name := range []string{"original_128.jpg", "rgb_300x220_420.jpg", "rgb_131x97_444.jpg", "progressive_128.jpg", "gray_100x100.jpg"} {
		img, err := libjpeg.Decode(context.Background(), fixture(t, name), opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := img.(*image.Gray); !ok {
			t.Errorf("%s: %T, want *image.Gray (the luma plane)", name, img)
		}
	}
}

// TestScanBombStops: a file of 20,000 empty scans over 4 megapixels (about
// 80 s of decoding in full) is refused once it passes MaxScans.
func TestScanBombStops(t *testing.T) {
	_, err := libjpeg.Decode(context.Background(), testruntime.ScanBombJPEG(2048, 2048, 20000), opts)
	if !errors.Is(err, libjpeg.ErrTooManyScans) {
		t.Fatalf("err = %v, want ErrTooManyScans", err)
	}
	// Within the limit, the same construction decodes (zeros): the bound is
	// what stopped it.
	if _, err := libjpeg.Decode(context.Background(), testruntime.ScanBombJPEG(64, 64, 50), opts); err != nil {
		t.Fatalf("50 scans: %v", err)
	}
}

// TestContextStopsDecoding: a done context stops a long decode; without
// the scan bound this one would run for over a minute.
func TestContextStopsDecoding(t *testing.T) {
	unbounded := opts
	unbounded.MaxScans = 1 << 30
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := libjpeg.Decode(ctx, testruntime.ScanBombJPEG(2048, 2048, 20000), unbounded)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := libjpeg.Decode(ctx, fixture(t, "original_128.jpg"), opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: err = %v, want context.Canceled", err)
	}
}

// TestPixelLimitBeforeDecoding: the header of a 60000x60000 image with no
// data is refused as too large, not as truncated: the limit is checked
// before any decoding.
func TestPixelLimitBeforeDecoding(t *testing.T) {
	header := testruntime.ScanBombJPEG(60000, 60000, 1)
	_, err := libjpeg.Decode(context.Background(), header, opts)
	if !errors.Is(err, libjpeg.ErrTooManyPixels) {
		t.Fatalf("err = %v, want ErrTooManyPixels", err)
	}
}

// TestErrorsDoNotExit: libjpeg's default error handler would exit the
// process; every one of these must come back as an error.
func TestErrorsDoNotExit(t *testing.T) {
	good := fixture(t, "original_128.jpg")
	corrupt := bytes.Clone(good)
	for i := 200; i < 400; i++ {
		corrupt[i] ^= 0x5a
	}
	for name, data := range map[string][]byte{
		"empty":          nil,
		"SOI only":       {0xff, 0xd8},
		"not a JPEG":     []byte("hello, world"),
		"truncated":      good[:len(good)/2],
		"corrupt tables": corrupt,
		"zero width":     testruntime.ScanBombJPEG(0, 16, 1),
		"no quant table": append([]byte{0xff, 0xd8}, testruntime.ScanBombJPEG(16, 16, 1)[2+69:]...),
	} {
		if _, err := libjpeg.Decode(context.Background(), data, opts); err == nil {
			t.Errorf("%s: no error", name)
		} else if errors.Is(err, libjpeg.ErrTooManyScans) || errors.Is(err, libjpeg.ErrTooManyPixels) {
			t.Errorf("%s: %v, want a decoding error", name, err)
		}
	}
}

// TestMemoryBound: a progressive image whose coefficient buffers exceed
// MaxMemory is refused rather than allocated.
func TestMemoryBound(t *testing.T) {
	small := opts
	small.MaxMemory = 1 << 20 // a 2048x2048 gray image needs 8 MiB of coefficients
	if _, err := libjpeg.Decode(context.Background(), testruntime.ScanBombJPEG(2048, 2048, 2), small); !errors.Is(err, libjpeg.ErrCorrupt) {
		t.Fatalf("err = %v, want libjpeg's refusal", err)
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "parity", "*.jpg"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(testruntime.ScanBombJPEG(64, 48, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := libjpeg.Decode(context.Background(), data, libjpeg.Options{MaxPixels: 1 << 20, MaxScans: 50, MaxMemory: 16 << 20})
		if err != nil {
			return
		}
		b := img.Bounds()
		if b.Dx() <= 0 || b.Dy() <= 0 || int64(b.Dx())*int64(b.Dy()) > 1<<20 {
			t.Fatalf("decoded %v", b)
		}
	})
}
