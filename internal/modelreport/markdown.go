package modelreport

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

// Change is what a pull request does to the model: the default branch's
// report (Old, nil when it has none) and the pull request's (New), and the
// deployed and planned fingerprints when the preview got that far.
type Change struct {
	Old, New       *Report
	OldFingerprint string
	NewFingerprint string
}

// Fingerprints reads the deployed and the planned model fingerprint (the
// stack output modelFingerprint) from a preview's event log (--event-log,
// one apitype.EngineEvent a line); "" for what the log does not hold (a
// preview that failed early, a first deployment).
func Fingerprints(events io.Reader) (old, planned string, err error) {
	scanner := bufio.NewScanner(events)
	scanner.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for line := 1; scanner.Scan(); line++ {
		if len(strings.TrimSpace(scanner.Text())) == 0 {
			continue
		}
		var e apitype.EngineEvent
		if err := json.Unmarshal(scanner.Bytes(), &e); err != nil {
			return "", "", fmt.Errorf("event log line %d: %w", line, err)
		}
		var step *apitype.StepEventMetadata
		switch {
		case e.ResOutputsEvent != nil:
			step = &e.ResOutputsEvent.Metadata
		case e.ResourcePreEvent != nil:
			step = &e.ResourcePreEvent.Metadata
		default:
			continue
		}
		if step.Type != "pulumi:pulumi:Stack" {
			continue
		}
		if step.Old != nil {
			if v, ok := step.Old.Outputs["modelFingerprint"].(string); ok {
				old = v
			}
		}
		if step.New != nil {
			if v, ok := step.New.Outputs["modelFingerprint"].(string); ok {
				planned = v
			}
		}
	}
	return old, planned, scanner.Err()
}

// Markdown is the pull request comment's section on the model.
func (c Change) Markdown() string {
	var b strings.Builder
	n := c.New
	b.WriteString("#### :crystal_ball: The model\n\n")
	fpKnown := c.OldFingerprint != "" && c.NewFingerprint != ""
	sameFile := c.Old != nil && c.Old.Model.SHA256 == n.Model.SHA256
	sameAnswers := sameFile && c.Old.EvalSet.SHA256 == n.EvalSet.SHA256 && slices.Equal(answers(c.Old), answers(n))
	summary := fmt.Sprintf("accuracy %s (%d/%d) on the evaluation set", percent(n.Accuracy), n.Correct, n.Total)
	switch {
	case fpKnown && c.OldFingerprint == c.NewFingerprint:
		fmt.Fprintf(&b, "**The model is unchanged** (fingerprint `%.12s`): this pull request changes only the infrastructure. Deployed model: `%s` (sha256 `%.12s`), %s.\n",
			c.NewFingerprint, n.Model.File, n.Model.SHA256, summary)
		return b.String()
	case sameAnswers:
		fmt.Fprintf(&b, "**The model file is unchanged** (`%s`, sha256 `%.12s`) and answers every image of the evaluation set as on the default branch: %s.", n.Model.File, n.Model.SHA256, summary)
		if fpKnown {
			fmt.Fprintf(&b, " The image changes (fingerprint `%.12s` -> `%.12s`): the server or its build changed.", c.OldFingerprint, c.NewFingerprint)
		}
		b.WriteString("\n")
		return b.String()
	case c.Old == nil:
		fmt.Fprintf(&b, "The default branch has no model report yet (`model/%s`); this model: `%s` (sha256 `%.12s`), %s.\n\n", Path, n.Model.File, n.Model.SHA256, summary)
		b.WriteString("| | this pull request |\n| --- | --- |\n")
		fmt.Fprintf(&b, "| **accuracy** | **%s** (%d/%d) |\n", percent(n.Accuracy), n.Correct, n.Total)
		for _, cl := range n.Classes {
			fmt.Fprintf(&b, "| %s | %s (%d/%d) |\n", cl.Label, percent(cl.Recall), cl.Correct, cl.Total)
		}
		fmt.Fprintf(&b, "| size | %s |\n| per image, p50 / p99 | %s |\n| inference, p50 / p99 | %s |\n", bytesOf(n.Model.Bytes), ms(n.Latency.TotalP50Ms, n.Latency.TotalP99Ms), ms(n.Latency.InferenceP50Ms, n.Latency.InferenceP99Ms))
		return b.String()
	}

	o := c.Old
	what := "**The model changes**"
	if sameFile {
		what = "**The model file is unchanged but its answers change** (the server's decoding or preprocessing, or the evaluation set, changed)"
	}
	fmt.Fprintf(&b, "%s: `%s` sha256 `%.12s` -> `%.12s`", what, n.Model.File, o.Model.SHA256, n.Model.SHA256)
	if fpKnown {
		fmt.Fprintf(&b, ", fingerprint `%.12s` -> `%.12s`", c.OldFingerprint, c.NewFingerprint)
	}
	b.WriteString(". Default branch beside this pull request, on the evaluation set")
	if o.EvalSet.SHA256 == n.EvalSet.SHA256 {
		fmt.Fprintf(&b, " (the same %d images):\n\n", n.Total)
	} else {
		fmt.Fprintf(&b, " (**the set changed**: %d images then, %d now, so the figures are not of the same images):\n\n", o.Total, n.Total)
	}

	b.WriteString("| | default branch | this pull request | change |\n| --- | --- | --- | --- |\n")
	fmt.Fprintf(&b, "| **accuracy** | %s (%d/%d) | **%s** (%d/%d) | %s |\n", percent(o.Accuracy), o.Correct, o.Total, percent(n.Accuracy), n.Correct, n.Total, points(n.Accuracy-o.Accuracy))
	worse := Worse(o, n)
	shown := map[string]bool{}
	for _, w := range worse {
		fmt.Fprintf(&b, "| :small_red_triangle_down: %s | %s (%d/%d) | **%s** (%d/%d) | %s |\n", w.Label, percent(w.Old.Recall), w.Old.Correct, w.Old.Total, percent(w.New.Recall), w.New.Correct, w.New.Total, points(w.New.Recall-w.Old.Recall))
		shown[w.Label] = true
	}
	for _, nc := range n.Classes {
		if shown[nc.Label] {
			continue
		}
		if oc, ok := o.Recall(nc.Label); ok {
			fmt.Fprintf(&b, "| %s | %s (%d/%d) | %s (%d/%d) | %s |\n", nc.Label, percent(oc.Recall), oc.Correct, oc.Total, percent(nc.Recall), nc.Correct, nc.Total, points(nc.Recall-oc.Recall))
		} else {
			fmt.Fprintf(&b, "| %s (new class) | | %s (%d/%d) | |\n", nc.Label, percent(nc.Recall), nc.Correct, nc.Total)
		}
	}
	for _, oc := range o.Classes {
		if _, ok := n.Recall(oc.Label); !ok {
			fmt.Fprintf(&b, "| %s (no longer evaluated) | %s (%d/%d) | | |\n", oc.Label, percent(oc.Recall), oc.Correct, oc.Total)
		}
	}
	fmt.Fprintf(&b, "| size | %s | %s | %+d bytes |\n", bytesOf(o.Model.Bytes), bytesOf(n.Model.Bytes), n.Model.Bytes-o.Model.Bytes)
	fmt.Fprintf(&b, "| per image, p50 / p99 | %s | %s | |\n", ms(o.Latency.TotalP50Ms, o.Latency.TotalP99Ms), ms(n.Latency.TotalP50Ms, n.Latency.TotalP99Ms))
	fmt.Fprintf(&b, "| inference, p50 / p99 | %s | %s | |\n", ms(o.Latency.InferenceP50Ms, o.Latency.InferenceP99Ms), ms(n.Latency.InferenceP50Ms, n.Latency.InferenceP99Ms))
	b.WriteString("\n")
	added, removed := difference(n.Model.Labels, o.Model.Labels), difference(o.Model.Labels, n.Model.Labels)
	switch {
	case len(added) > 0 || len(removed) > 0:
		fmt.Fprintf(&b, "Labels added: %s; removed: %s.\n", orNone(quoted(added)), orNone(quoted(removed)))
	case !slices.Equal(o.Model.Labels, n.Model.Labels):
		fmt.Fprintf(&b, "**The labels are in another order**: %s -> %s (each output now means another class).\n", strings.Join(quoted(o.Model.Labels), ", "), strings.Join(quoted(n.Model.Labels), ", "))
	default:
		b.WriteString("Labels unchanged.\n")
	}
	if o.Latency.MeasuredOn != n.Latency.MeasuredOn {
		fmt.Fprintf(&b, "Timings come from the machines that ran `cmd/evaluate` (%s; %s): compare them with care.\n", o.Latency.MeasuredOn, n.Latency.MeasuredOn)
	}
	return b.String()
}

func answers(r *Report) []string {
	out := make([]string, len(r.Images))
	for i, a := range r.Images {
		out[i] = a.File + "=" + a.Predicted
	}
	return out
}

func difference(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func quoted(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = "`" + s + "`"
	}
	return out
}

func points(d float64) string {
	switch {
	case d > 1e-9:
		return fmt.Sprintf("+%.1f pts", d*100)
	case d < -1e-9:
		return fmt.Sprintf("**%.1f pts**", d*100)
	}
	return "="
}

func ms(p50, p99 float64) string {
	if p50 == 0 && p99 == 0 {
		return "not measured"
	}
	return fmt.Sprintf("%.3f / %.3f ms", p50, p99)
}

func bytesOf(n int64) string { return fmt.Sprintf("%.1f KB", float64(n)/1000) }
