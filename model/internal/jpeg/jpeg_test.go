package jpeg

import (
	"bytes"
	"image"
	stdjpeg "image/jpeg"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// TestIDCTAgainstFloat: the integer IDCT stays within 1 of the exact
// transform (libjpeg's islow guarantees this for in-range data).
func TestIDCTAgainstFloat(t *testing.T) {
	rng := rand.New(rand.NewSource(77))
	for n := 0; n < 2000; n++ {
		var b block
		var in [blockSize]float64
		for i := range b {
			if i == 0 || rng.Intn(4) == 0 {
				v := int32(rng.Intn(256) - 128)
				if i == 0 {
					v = int32(rng.Intn(2000) - 1000)
				}
				b[i], in[i] = v, float64(v)
			}
		}
		idct(&b)
		for y := range 8 {
			for x := range 8 {
				var sum float64
				for v := range 8 {
					for u := range 8 {
						cu, cv := 1.0, 1.0
						if u == 0 {
							cu = 1 / math.Sqrt2
						}
						if v == 0 {
							cv = 1 / math.Sqrt2
						}
						sum += cu * cv * in[v*8+u] *
							math.Cos(float64(2*x+1)*float64(u)*math.Pi/16) * math.Cos(float64(2*y+1)*float64(v)*math.Pi/16)
					}
				}
				want := sum / 4
				if want < -128 || want > 127 {
					continue // clamped anyway
				}
				if d := math.Abs(float64(b[y*8+x]) - want); d > 1.01 {
					t.Fatalf("block %d (%d,%d): idct %d, exact %.2f", n, x, y, b[y*8+x], want)
				}
			}
		}
	}
}

// TestDecodeLumaIsDecodesY: DecodeLuma's plane is Decode's Y plane, and both
// stay within 2 of the standard library's decoder (a different IDCT).
func TestDecodeLumaIsDecodesY(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/parity/*.jpg")
	if len(files) == 0 {
		t.Fatal("no JPEG fixtures")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		full, err := Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		luma, err := DecodeLuma(data)
		if err != nil {
			t.Fatal(err)
		}
		std, err := stdjpeg.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		y := func(img image.Image, x, yy int) int {
			switch m := img.(type) {
			case *image.YCbCr:
				return int(m.Y[m.YOffset(x, yy)])
			case *image.Gray:
				return int(m.Pix[m.PixOffset(x, yy)])
			}
			t.Fatalf("%s: unexpected %T", f, img)
			return 0
		}
		b := full.Bounds()
		if luma.Bounds() != b {
			t.Fatalf("%s: bounds %v vs %v", f, luma.Bounds(), b)
		}
		for yy := b.Min.Y; yy < b.Max.Y; yy++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				if y(full, x, yy) != y(luma, x, yy) {
					t.Fatalf("%s (%d,%d): Decode %d, DecodeLuma %d", f, x, yy, y(full, x, yy), y(luma, x, yy))
				}
				if d := y(full, x, yy) - y(std, x, yy); d < -2 || d > 2 {
					t.Fatalf("%s (%d,%d): %d vs standard library %d", f, x, yy, y(full, x, yy), y(std, x, yy))
				}
			}
		}
	}
}
