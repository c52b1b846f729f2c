package config

import (
	"os"
	"strconv"
)

// BaselineReportEnv names the environment variable that gives the default
// branch's model report: the pipeline writes it from the default branch
// (`git show`, or the forge's API) before a preview. It is an input of the
// run, not a setting of the stack. Unset: mlops:maxAccuracyDrop is not
// checked (the deploy job on the default branch, whose pull request was).
const BaselineReportEnv = "MLOPS_BASELINE_REPORT"

// modelGate reads mlops:minAccuracy and mlops:maxAccuracyDrop (fractions
// from 0 to 1) and where the baseline report is; the program reads it.
func (r *reader) modelGate(m *Model) {
	m.Gate.MinAccuracy = r.fraction("minAccuracy", "0 lets any model through")
	m.Gate.MaxAccuracyDrop = r.fraction("maxAccuracyDrop", "1 lets any drop through")
	m.BaselineReport = os.Getenv(BaselineReportEnv)
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
