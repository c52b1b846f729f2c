// Package pack is the server's "package" command: it turns a user's ONNX
// image classifier, its labels and a folder of labelled held-out images
// (one folder per class, the MLOps guide's layout) into what the deploy
// needs in model/:
//
//	artifacts/planets.onnx   the model, copied
//	artifacts/model.json     its declaration (internal/contract)
//	eval/<label>/<image>     the evaluation set: per class, the -per-class
//	                         images whose contents' SHA-256 sort first
//	                         (a fixed rule nobody picks by hand; files are
//	                         copied as they are)
//	artifacts/report.json    its evaluation on that set (internal/evaluate)
//
// What the graph tells (tensor names, input size, channels and, when
// unambiguous, the layout) is read from it; the rest comes from flags whose
// defaults are the guide's preprocessing (bilinear resize, 0..1, logits).
// The declaration is then checked against the graph exactly as the server
// does at load, and the model is evaluated with the server's own code.
package pack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/contract"
	"github.com/planets-mlops/deploy/model/internal/evaluate"
)

// Options are the command's flags.
type Options struct {
	Model, Labels, Images, Out string
	Layout                     string // "", "NCHW" or "NHWC"
	Range                      string
	Mean, Std                  []float64
	Resize, Output             string
	PerClass                   int
	Rounds                     int
}

// Main runs the command with args (after "package") and returns the exit
// code, writing one line on stderr on failure.
func Main(args []string, lib string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	var mean, std string
	fs.StringVar(&o.Model, "model", "", "the ONNX model (required)")
	fs.StringVar(&o.Labels, "labels", "", "a JSON list of the class names in the output's order (the guide's labels.json); default: the -images folders' names, sorted")
	fs.StringVar(&o.Images, "images", "", "held-out images, one folder per class named by its label (required)")
	fs.StringVar(&o.Out, "out", "", "the model/ directory to write artifacts/ and eval/ into (required; eval/ is replaced)")
	fs.StringVar(&o.Layout, "layout", "", "NCHW or NHWC; default: read from the graph when the channel axis is unambiguous")
	fs.StringVar(&o.Range, "range", "0..1", "0..1 (pixel/255) or mean_std (with -mean and -std)")
	fs.StringVar(&mean, "mean", "", "with -range mean_std: per-channel means on the 0..1 scale, comma-separated")
	fs.StringVar(&std, "std", "", "with -range mean_std: per-channel standard deviations, comma-separated")
	fs.StringVar(&o.Resize, "resize", "bilinear", "bilinear (tf.image.resize: half-pixel centres, no antialias) or area (exact area averaging)")
	fs.StringVar(&o.Output, "output", "logits", "logits (the server applies softmax) or probabilities")
	fs.IntVar(&o.PerClass, "per-class", 10, "images per class in the evaluation set (1 to 1000)")
	fs.IntVar(&o.Rounds, "rounds", 20, "timed passes over the set for the report's latency")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var err error
	if o.Mean, err = floats("mean", mean); err == nil {
		o.Std, err = floats("std", std)
	}
	if err == nil {
		err = Run(context.Background(), o, lib, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "package:", strings.Join(strings.Fields(err.Error()), " "))
		return 1
	}
	return 0
}

func floats(name, list string) ([]float64, error) {
	if list == "" {
		return nil, nil
	}
	var out []float64
	for f := range strings.SplitSeq(list, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, fmt.Errorf("-%s %q: want comma-separated numbers", name, list)
		}
		out = append(out, v)
	}
	return out, nil
}

// Run packages o.Model into o.Out.
func Run(ctx context.Context, o Options, lib string, stdout io.Writer) error {
	switch {
	case o.Model == "" || o.Images == "" || o.Out == "":
		return errors.New("-model, -images and -out are required: the ONNX file, the held-out images (one folder per class) and the model/ directory to write")
	case o.PerClass < 1 || o.PerClass > 1000:
		return fmt.Errorf("-per-class %d: want 1 to 1000", o.PerClass)
	case o.Rounds < 1:
		return fmt.Errorf("-rounds %d: want at least 1", o.Rounds)
	case lib == "":
		return errors.New("no onnxruntime library: set ONNXRUNTIME_LIB (model/hack/onnxruntime.sh prints it; the Docker image sets it)")
	}
	classes, err := classFolders(o.Images)
	if err != nil {
		return err
	}
	labels := classes
	if o.Labels != "" {
		if labels, err = readLabels(o.Labels); err != nil {
			return err
		}
		for _, c := range classes {
			if !slices.Contains(labels, c) {
				return fmt.Errorf("-images %s: folder %q is not one of the labels %q in %s; want one folder per label", o.Images, c, labels, o.Labels)
			}
		}
	}
	if err := classifier.InitRuntime(lib); err != nil {
		return err
	}
	decl, err := declare(o, labels)
	if err != nil {
		return err
	}

	artifacts := filepath.Join(o.Out, "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		return err
	}
	modelPath := filepath.Join(artifacts, "planets.onnx")
	if err := copyFile(o.Model, modelPath); err != nil {
		return err
	}
	if err := decl.Write(contract.Path(modelPath)); err != nil {
		return err
	}
	model, err := classifier.Load(modelPath, 1) // checks the declaration against the graph
	if err != nil {
		return err
	}
	defer model.Close()

	evalDir := filepath.Join(o.Out, "eval")
	picked, err := selectSet(o.Images, classes, o.PerClass, evalDir)
	if err != nil {
		return err
	}
	set, err := evaluate.LoadSet(evalDir)
	if err != nil {
		return err
	}
	report, err := evaluate.Evaluate(ctx, model, modelPath, set, evaluate.Options{Rounds: o.Rounds})
	if err != nil {
		return err
	}
	reportPath := filepath.Join(artifacts, "report.json")
	if err := report.Write(reportPath); err != nil {
		return err
	}
	ct := model.Contract()
	fmt.Fprintf(stdout, "package: %s: input %q %s, output %q %s, %d labels\n", modelPath, ct.Input, ct.Spec, ct.Output, decl.Output, len(labels))
	fmt.Fprintf(stdout, "package: %s: %d images (%s)\n", evalDir, len(set.Images), picked)
	fmt.Fprintf(stdout, "package: %s: accuracy %.4f (%d/%d)\n", reportPath, report.Accuracy, report.Correct, report.Total)
	return nil
}

// declare builds the declaration: the layout (unless given) and channels
// from the graph, the rest from o.
func declare(o Options, labels []string) (*contract.Declaration, error) {
	inputs, _, err := ort.GetInputOutputInfo(o.Model)
	if err != nil {
		return nil, fmt.Errorf("-model %s: onnxruntime cannot read it: %v", o.Model, err)
	}
	if len(inputs) != 1 || len(inputs[0].Dimensions) != 4 {
		return nil, fmt.Errorf("-model %s: want one rank-4 image input, the graph has %d inputs", o.Model, len(inputs))
	}
	dims := inputs[0].Dimensions
	isChannels := func(d int64) bool { return d == 1 || d == 3 }
	layout := o.Layout
	if layout == "" {
		switch {
		case isChannels(dims[1]) && !isChannels(dims[3]):
			layout = "NCHW"
		case isChannels(dims[3]) && !isChannels(dims[1]):
			layout = "NHWC"
		default:
			return nil, fmt.Errorf("-layout: the input %q is %v: either axis 1 or 3 may be the channels; want -layout NCHW or NHWC", inputs[0].Name, dims)
		}
	}
	channels := dims[1]
	if layout == "NHWC" {
		channels = dims[3]
	}
	if !isChannels(channels) {
		return nil, fmt.Errorf("-layout %s: the input %q is %v, whose channel axis in %s holds %d; want 1 or 3 there (is it the other layout?)", layout, inputs[0].Name, dims, layout, channels)
	}
	d := &contract.Declaration{Format: contract.Format, Layout: layout, Channels: int(channels), Range: o.Range,
		Mean: o.Mean, Std: o.Std, Resize: o.Resize, Output: o.Output, Labels: labels}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("the declaration from the flags and the graph: %w", err)
	}
	return d, nil
}

func readLabels(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-labels: %w", err)
	}
	var labels []string
	if err := json.Unmarshal(raw, &labels); err != nil {
		return nil, fmt.Errorf("-labels %s: %v; want a JSON list of class names", path, err)
	}
	return labels, nil
}

var imageExts = []string{".png", ".jpg", ".jpeg", ".gif"}

// classFolders lists dir's class folders, sorted.
func classFolders(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("-images: %w", err)
	}
	var classes []string
	for _, e := range entries {
		if e.IsDir() {
			classes = append(classes, e.Name())
		}
	}
	if len(classes) == 0 {
		return nil, fmt.Errorf("-images %s has no folders; want one folder of images per class", dir)
	}
	sort.Strings(classes)
	return classes, nil
}

// selectSet copies, for each class, the perClass images of images/<class>
// whose contents' SHA-256 sort first into out/<class>/ (out replaced).
func selectSet(images string, classes []string, perClass int, out string) (string, error) {
	if err := os.RemoveAll(out); err != nil {
		return "", err
	}
	var counts []string
	for _, class := range classes {
		entries, err := os.ReadDir(filepath.Join(images, class))
		if err != nil {
			return "", err
		}
		type candidate struct{ name, sum string }
		var found []candidate
		for _, e := range entries {
			if e.IsDir() || !slices.Contains(imageExts, strings.ToLower(filepath.Ext(e.Name()))) {
				continue
			}
			raw, err := os.ReadFile(filepath.Join(images, class, e.Name()))
			if err != nil {
				return "", err
			}
			sum := sha256.Sum256(raw)
			found = append(found, candidate{e.Name(), hex.EncodeToString(sum[:])})
		}
		if len(found) == 0 {
			return "", fmt.Errorf("-images %s: folder %q has no PNG, JPEG or GIF images", images, class)
		}
		sort.Slice(found, func(i, j int) bool {
			return found[i].sum < found[j].sum || found[i].sum == found[j].sum && found[i].name < found[j].name
		})
		found = found[:min(perClass, len(found))]
		if err := os.MkdirAll(filepath.Join(out, class), 0o755); err != nil {
			return "", err
		}
		for _, c := range found {
			if err := copyFile(filepath.Join(images, class, c.name), filepath.Join(out, class, c.name)); err != nil {
				return "", err
			}
		}
		counts = append(counts, fmt.Sprintf("%s %d", class, len(found)))
	}
	return strings.Join(counts, ", "), nil
}

func copyFile(from, to string) error {
	raw, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, raw, 0o644)
}
