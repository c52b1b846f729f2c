package preprocess_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/model/internal/preprocess"
	"github.com/planets-mlops/deploy/model/internal/testenv"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

func limits(maxPixels int64) preprocess.Limits {
	return preprocess.Limits{MaxPixels: maxPixels, MaxJPEGScans: 100}
}

func tensor(data []byte, maxPixels int64) ([]float32, error) {
	dst := make([]float32, preprocess.Len)
	return dst, preprocess.Tensor(context.Background(), data, limits(maxPixels), dst)
}

// TestParityInputs checks that Go computes the same model input as the
// training code for every fixture image (sizes, colour models, formats).
func TestParityInputs(t *testing.T) {
	for _, img := range testruntime.LoadParity(t).Images {
		t.Run(img.File, func(t *testing.T) {
			got, err := tensor(img.Data, 1<<24)
			if err != nil {
				t.Fatal(err)
			}
			var worst float64
			for i, want := range img.Input {
				worst = math.Max(worst, math.Abs(float64(got[i])-want))
			}
			// float32 rounding of the same float64 computation: ~6e-8.
			if worst > 1e-6 {
				t.Errorf("%s (%s %s %dx%d): max |go - python| = %g, want <= 1e-6", img.File, img.Format, img.Mode, img.Width, img.Height, worst)
			}
		})
	}
}

func TestAreaResizeOfConstantIsConstant(t *testing.T) {
	for _, size := range [][2]int{{1, 1}, {7, 3}, {32, 32}, {33, 31}, {128, 128}, {1000, 17}} {
		w, h := size[0], size[1]
		gray := make([]float64, w*h)
		for i := range gray {
			gray[i] = 200
		}
		dst := make([]float32, preprocess.Len)
		preprocess.Resize(gray, w, h, dst)
		for i, v := range dst {
			if math.Abs(float64(v)-200.0/255) > 1e-6 {
				t.Fatalf("%dx%d: dst[%d] = %v, want %v", w, h, i, v, 200.0/255)
			}
		}
	}
}

// TestBlockResizeIsExact: for sides that split into power-of-two blocks
// (the dataset's 128x128), the integer block sums give bit for bit the
// weighted float64 sums of the general path.
func TestBlockResizeIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// 8192 rows: bands of 256, the most the 16-bit lanes hold; 16384:
	// bands of 512, summed pixel by pixel. Bright images fill the lanes.
	for _, size := range [][2]int{{128, 128}, {32, 32}, {64, 256}, {512, 128}, {32, 8192}, {32, 16384}} {
		for _, bright := range []bool{false, true} {
			img := image.NewGray(image.Rect(0, 0, size[0]+8, size[1]+3))
			for i := range img.Pix {
				img.Pix[i] = uint8(rng.IntN(256))
				if bright {
					img.Pix[i] = 255 - uint8(rng.IntN(2))
				}
			}
			// A sub-image: a stride wider than the width, an offset start.
			checkBlocksExact(t, img.SubImage(image.Rect(5, 2, 5+size[0], 2+size[1])).(*image.Gray))
		}
	}
}

// checkBlocksExact compares the block path (Into a gray image) with the
// general weighted sums (Resize).
func checkBlocksExact(t *testing.T, img *image.Gray) {
	t.Helper()
	blocks := make([]float32, preprocess.Len)
	preprocess.Into(img, blocks)
	gray, w, h := preprocess.Gray(img)
	general := make([]float32, preprocess.Len)
	preprocess.Resize(gray, w, h, general)
	if !slices.Equal(blocks, general) {
		t.Errorf("%dx%d: block sums differ from the weighted sums", w, h)
	}
}

func TestAlphaIsIgnoredAndGrayFormula(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	img.SetNRGBA(0, 0, color.NRGBA{R: 255, G: 0, B: 0, A: 0})
	img.SetNRGBA(1, 0, color.NRGBA{R: 10, G: 20, B: 30, A: 128})
	gray, _, _ := preprocess.Gray(img)
	want := []float64{0.299 * 255, 0.299*10 + 0.587*20 + 0.114*30}
	for i := range want {
		if math.Abs(gray[i]-want[i]) > 1e-9 {
			t.Errorf("gray[%d] = %v, want %v", i, gray[i], want[i])
		}
	}
}

// bombPNG is a valid PNG header announcing width x height, with no pixel data.
func bombPNG(width, height uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], width)
	binary.BigEndian.PutUint32(ihdr[4:], height)
	ihdr[8], ihdr[9] = 8, 0 // 8-bit gray
	chunk := append([]byte("IHDR"), ihdr...)
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestDecompressionBombRefusedBeforeDecoding(t *testing.T) {
	_, _, err := preprocess.Decode(context.Background(), bombPNG(100000, 100000), limits(1<<22))
	if !errors.Is(err, preprocess.ErrTooManyPixels) {
		t.Fatalf("err = %v, want ErrTooManyPixels", err)
	}
}

func TestErrors(t *testing.T) {
	var pngBuf bytes.Buffer
	png.Encode(&pngBuf, image.NewGray(image.Rect(0, 0, 40, 40)))
	for name, tc := range map[string]struct {
		data []byte
		want error
	}{
		"text":           {[]byte("hello, world"), preprocess.ErrUnsupportedFormat},
		"truncated png":  {pngBuf.Bytes()[:pngBuf.Len()/2], preprocess.ErrInvalidImage},
		"truncated jpeg": {[]byte("\xff\xd8\xff\xe0\x00\x10JFIF"), preprocess.ErrInvalidImage},
		"zero size":      {bombPNG(0, 10), preprocess.ErrInvalidImage},
	} {
		if _, err := tensor(tc.data, 1<<22); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
}

// TestErrorNamesTheFormatOnce: the standard decoders' messages already
// start with the format ("gif: ..."); the error says it once.
func TestErrorNamesTheFormatOnce(t *testing.T) {
	var gifBuf bytes.Buffer
	if err := gif.Encode(&gifBuf, image.NewPaletted(image.Rect(0, 0, 20, 20), color.Palette{color.Black, color.White}), nil); err != nil {
		t.Fatal(err)
	}
	var pngBuf bytes.Buffer
	png.Encode(&pngBuf, image.NewGray(image.Rect(0, 0, 40, 40)))
	for format, data := range map[string][]byte{"gif": gifBuf.Bytes()[:gifBuf.Len()-8], "png": pngBuf.Bytes()[:pngBuf.Len()/2]} {
		_, err := tensor(data, 1<<22)
		if !errors.Is(err, preprocess.ErrInvalidImage) || strings.Count(err.Error(), format+":") != 1 {
			t.Errorf("%s: err = %v, want ErrInvalidImage naming %q once", format, err, format)
		}
	}
}

// TestGray16IsItsHighByte: a 16-bit gray sample counts as its high byte,
// as the training code defines it (see the gray16 parity fixture).
func TestGray16IsItsHighByte(t *testing.T) {
	img := image.NewGray16(image.Rect(0, 0, 3, 1))
	for x, v := range []uint16{0x0000, 0x80ff, 0xffff} {
		img.SetGray16(x, 0, color.Gray16{Y: v})
	}
	gray, _, _ := preprocess.Gray(img)
	if want := []float64{0, 0x80, 0xff}; !slices.Equal(gray, want) {
		t.Errorf("gray = %v, want %v", gray, want)
	}
}

// FuzzTensor: no input may panic, and every accepted image gives values in [0,1].
func FuzzTensor(f *testing.F) {
	for _, img := range testruntime.LoadParity(f).Images {
		f.Add(img.Data)
		f.Add(img.Data[:len(img.Data)/2])
	}
	f.Add(bombPNG(100000, 100000))
	f.Add([]byte("GIF89a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		input, err := tensor(data, 1<<20)
		if err != nil {
			return
		}
		for _, v := range input {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("input value %v outside [0,1]", v)
			}
		}
	})
}

// BenchmarkTensor: decode + grayscale + resize of a 128x128 dataset JPEG.
func BenchmarkTensor(b *testing.B) {
	data := testruntime.LoadParity(b).Images[0].Data
	var times []time.Duration
	dst := make([]float32, preprocess.Len)
	ctx := context.Background()
	for b.Loop() {
		start := time.Now()
		if err := preprocess.Tensor(ctx, data, limits(1<<24), dst); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	// The median is robust to the preemptions of a busy machine; the mean
	// (ns/op) is not.
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds())/1000, "median-us")
}

// TestDatasetParity compares Go's model inputs with the training code's
// (training/inputs.py, Pillow with libjpeg-turbo) for every JPEG of the
// dataset, which is next to the repository ($PLANETS_DATA or
// ../shared/datasets/planets). A proof of the full tier (testenv): without
// the dataset or Python's Pillow and numpy it fails there, and is skipped
// with a message in the hermetic tier.
func TestDatasetParity(t *testing.T) {
	repo := filepath.Dir(testruntime.ModuleRoot(t))
	root := testenv.NeedDataset(t, repo)
	paths, _ := filepath.Glob(filepath.Join(root, "raw", "*", "*.jpg"))
	cmd := exec.Command("/usr/bin/python3", filepath.Join(repo, "training", "inputs.py"))
	cmd.Stdin = strings.NewReader(strings.Join(paths, "\n"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := fmt.Sprintf("training/inputs.py: %v: %s", err, stderr.String())
		if strings.Contains(stderr.String(), "ModuleNotFoundError") {
			testenv.NeedProof(t, "Python's Pillow and numpy (apt-get install python3-pil python3-numpy)", func() error { return errors.New(msg) })
		}
		t.Fatal(msg)
	}
	if len(out) != len(paths)*preprocess.Len*4 {
		t.Fatalf("training/inputs.py wrote %d bytes for %d images, want %d", len(out), len(paths), len(paths)*preprocess.Len*4)
	}
	var worst float64
	dst := make([]float32, preprocess.Len)
	for i, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := preprocess.Tensor(context.Background(), data, limits(1<<24), dst); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for j, got := range dst {
			want := math.Float32frombits(binary.LittleEndian.Uint32(out[(i*preprocess.Len+j)*4:]))
			worst = math.Max(worst, math.Abs(float64(got)-float64(want)))
		}
	}
	t.Logf("%d dataset images: max |go - python| = %g", len(paths), worst)
	if worst > 1e-6 {
		t.Errorf("max |go - python| = %g over %d dataset images, want <= 1e-6", worst, len(paths))
	}
}
