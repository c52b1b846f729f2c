// Command evalset writes the evaluation set (model/eval/) from the held-out
// images training listed (artifacts/heldout.txt): the first -per-class
// images of each class in that list, which is itself a seeded random
// permutation (training/planets.py), so the set is a stratified random
// sample that nobody picked by hand.
//
// The dataset's images are not copied into the repository (its README asks
// so): each is stored as the PNG of what the server decodes from it (for a
// YCbCr JPEG its luma plane, 8-bit gray), which the server turns into the
// very same model input. The command checks that, input value for input
// value, for every image it writes.
//
// Usage (in model/): go run ./hack/evalset [-data ../../shared/datasets/planets] [-per-class 10]
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"image/png"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/planets-mlops/deploy/model/internal/evaluate"
	"github.com/planets-mlops/deploy/model/internal/preprocess"
)

func main() {
	data := flag.String("data", filepath.Join("..", "..", "shared", "datasets", "planets"), "the planets dataset (raw/<Class>/<file>.jpg)")
	heldout := flag.String("heldout", filepath.Join("artifacts", "heldout.txt"), "training's held-out list")
	perClass := flag.Int("per-class", 10, "images per class (model/eval/ holds 10)")
	out := flag.String("out", "eval", "the evaluation set's directory (replaced)")
	flag.Parse()
	if err := run(*data, *heldout, *out, *perClass); err != nil {
		fmt.Fprintln(os.Stderr, "evalset:", err)
		os.Exit(1)
	}
}

func run(data, heldout, out string, perClass int) error {
	f, err := os.Open(heldout)
	if err != nil {
		return err
	}
	defer f.Close()
	taken := map[string]int{}
	var picked []string
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		rel := strings.TrimSpace(lines.Text())
		class := path.Base(path.Dir(rel))
		if rel == "" || taken[class] >= perClass {
			continue
		}
		taken[class]++
		picked = append(picked, rel)
	}
	if err := lines.Err(); err != nil {
		return err
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	ctx := context.Background()
	var total int
	for _, rel := range picked {
		original, err := os.ReadFile(filepath.Join(data, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		img, _, err := preprocess.Decode(ctx, original, evaluate.Limits)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		var encoded bytes.Buffer
		if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&encoded, img); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		want, got := make([]float32, preprocess.Len), make([]float32, preprocess.Len)
		if err := preprocess.Tensor(ctx, original, evaluate.Limits, want); err != nil {
			return err
		}
		if err := preprocess.Tensor(ctx, encoded.Bytes(), evaluate.Limits, got); err != nil {
			return err
		}
		if !slices.Equal(want, got) {
			return fmt.Errorf("%s: the PNG does not give the JPEG's model input", rel)
		}
		class := path.Base(path.Dir(rel))
		name := strings.TrimSuffix(path.Base(rel), path.Ext(rel)) + ".png"
		dst := filepath.Join(out, class, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, encoded.Bytes(), 0o644); err != nil {
			return err
		}
		total += encoded.Len()
		fmt.Printf("%s <- %s (%dx%d, %d bytes)\n", dst, rel, img.Bounds().Dx(), img.Bounds().Dy(), encoded.Len())
	}
	fmt.Printf("%d images, %d bytes\n", len(picked), total)
	return nil
}
