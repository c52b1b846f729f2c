package evaluate

import (
	"context"
	"fmt"
	"image"
	"math"
	"os"
	"strings"

	"github.com/planets-mlops/deploy/model/internal/classifier"
	"github.com/planets-mlops/deploy/model/internal/contract"
)

// CheckOptions say what Check checks.
type CheckOptions struct {
	ModelPath string
	// ReportPath is the committed report; with EvalDir, the set is
	// evaluated again and must give the report's answers. "" checks the
	// model alone.
	ReportPath string
	EvalDir    string
}

// Check loads the model as the server does (which checks its input and
// output against what the server feeds and reads, and its labels against
// the output's width), runs one inference and checks that it gives finite
// probabilities summing to 1, then, with a report, evaluates the set again
// and compares. It returns a one-line summary, or an error of one line that
// names the file and what is wrong, wrapping ErrCheck.
func Check(ctx context.Context, opts CheckOptions) (string, error) {
	fail := func(file string, err error) error {
		return fmt.Errorf("%w: %s: %s", ErrCheck, file, oneLine(err.Error()))
	}
	info, err := os.Stat(opts.ModelPath)
	if err != nil {
		return "", fail(opts.ModelPath, err)
	}
	if info.Size() == 0 {
		return "", fail(opts.ModelPath, fmt.Errorf("empty file, want an ONNX model"))
	}
	model, err := classifier.Load(opts.ModelPath, 1)
	if err != nil {
		// The classifier's errors name the file already.
		return "", fmt.Errorf("%w: %s", ErrCheck, oneLine(err.Error()))
	}
	defer model.Close()

	// A mid-gray image: any valid input must give a distribution.
	spec := model.Input()
	gray := image.NewGray(image.Rect(0, 0, spec.Width, spec.Height))
	for i := range gray.Pix {
		gray.Pix[i] = 128
	}
	input := make([]float32, spec.Len())
	spec.Into(gray, input)
	pred, err := model.Predict(ctx, input)
	if err != nil {
		return "", fail(opts.ModelPath, err)
	}
	declPath := contract.Path(opts.ModelPath)
	if len(pred.Probabilities) != len(model.Labels()) {
		return "", fail(opts.ModelPath, fmt.Errorf("an inference gave %d probabilities for %d labels", len(pred.Probabilities), len(model.Labels())))
	}
	var sum float64
	for i, p := range pred.Probabilities {
		if math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) {
			return "", fail(opts.ModelPath, fmt.Errorf("an inference gave the probability %v for %s: the model's output is not finite", p, model.Labels()[i]))
		}
		if p < 0 && model.Contract().Probabilities {
			return "", fmt.Errorf("%w: declaration %s: output: declared \"probabilities\", but an inference gave %v for %s: want \"logits\"", ErrCheck, declPath, p, model.Labels()[i])
		}
		sum += float64(p)
	}
	if math.Abs(sum-1) > 1e-3 {
		if model.Contract().Probabilities {
			return "", fmt.Errorf("%w: declaration %s: output: declared \"probabilities\", but an inference's outputs sum to %v: want \"logits\"", ErrCheck, declPath, sum)
		}
		return "", fail(opts.ModelPath, fmt.Errorf("an inference's probabilities sum to %v, want 1", sum))
	}
	ct := model.Contract()
	output := "logits"
	if ct.Probabilities {
		output = "probabilities"
	}
	summary := fmt.Sprintf("model check: %s loads with %s (input %q %s, output %q [N,%d] %s), labels %s, one inference sums to %.6f",
		opts.ModelPath, declPath, ct.Input, ct.Spec, ct.Output, len(model.Labels()), output, strings.Join(model.Labels(), ","), sum)
	if opts.ReportPath == "" {
		return summary, nil
	}

	committed, err := Read(opts.ReportPath)
	if err != nil {
		return "", fail(opts.ReportPath, err)
	}
	set, err := LoadSet(opts.EvalDir)
	if err != nil {
		return "", fail(opts.EvalDir, err)
	}
	fresh, err := Evaluate(ctx, model, opts.ModelPath, set, Options{ModelName: committed.Model.File})
	if err != nil {
		return "", fail(opts.ModelPath, err)
	}
	if diffs := Differences(committed, fresh); len(diffs) > 0 {
		return "", fail(opts.ReportPath, fmt.Errorf("does not match %s on %s: %s; run `go run ./cmd/evaluate` in model/ and commit the report",
			opts.ModelPath, opts.EvalDir, strings.Join(diffs, "; ")))
	}
	return fmt.Sprintf("%s; the %d images of %s give the report's answers (accuracy %.4f, %d/%d)",
		summary, fresh.Total, opts.EvalDir, fresh.Accuracy, fresh.Correct, fresh.Total), nil
}

// oneLine joins a multi-line message (onnxruntime's can span lines).
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
