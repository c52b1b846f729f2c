package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"github.com/planets-mlops/deploy/internal/modelreport"
)

// BaselineReportEnv names the environment variable that gives the default
// branch's model report: the pipeline writes it from the default branch
// (`git show`, or the forge's API) before a preview. It is an input of the
// run, not a setting of the stack. Unset: mlops:maxAccuracyDrop is not
// checked (the deploy job on the default branch, whose pull request was).
const BaselineReportEnv = "MLOPS_BASELINE_REPORT"

// modelGate reads mlops:minAccuracy and mlops:maxAccuracyDrop (fractions
// from 0 to 1) and the baseline report.
func (r *reader) modelGate(m *Model) {
	m.Gate.MinAccuracy = r.fraction("minAccuracy", "0 lets any model through")
	m.Gate.MaxAccuracyDrop = r.fraction("maxAccuracyDrop", "1 lets any drop through")
	path := os.Getenv(BaselineReportEnv)
	if path == "" {
		return
	}
	baseline, err := modelreport.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.errs = append(r.errs, fmt.Errorf("%s=%s: no such file; expected the default branch's model report, or unset", BaselineReportEnv, path))
	case err != nil:
		r.errs = append(r.errs, fmt.Errorf("%s=%s: %w", BaselineReportEnv, path, err))
	default:
		m.Baseline, m.BaselineName = baseline, path
	}
}

// fraction reads a number from 0 to 1 (Pulumi.yaml has no number type:
// the key is a string).
func (r *reader) fraction(key, off string) float64 {
	v := r.str(key)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1 {
		r.fail(key, v, "a fraction from 0 to 1, such as 0.9 ("+off+")")
	}
	return f
}
