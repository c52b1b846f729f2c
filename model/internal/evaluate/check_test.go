package evaluate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/planets-mlops/deploy/model/internal/evaluate"
	"github.com/planets-mlops/deploy/model/internal/testruntime"
)

var labels = []string{"Earth", "Jupiter", "Mars", "Mercury", "Moon", "Neptune", "Pluto", "Saturn", "Uranus", "Venus"}

func committed(t *testing.T) evaluate.CheckOptions {
	root := testruntime.ModuleRoot(t)
	return evaluate.CheckOptions{
		ModelPath:  testruntime.ModelPath(t),
		ReportPath: filepath.Join(root, "artifacts", "report.json"),
		EvalDir:    filepath.Join(root, "eval"),
	}
}

// The committed model, its report and the evaluation set pass the check
// the image build runs.
func TestCheckPassesTheCommittedModel(t *testing.T) {
	testruntime.Init(t)
	summary, err := evaluate.Check(context.Background(), committed(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(summary)
	if !strings.Contains(summary, "give the report's answers") {
		t.Errorf("summary %q does not say the set was evaluated", summary)
	}
}

// Every broken model fails the check with one line that names the file and
// what is wrong.
func TestCheckNamesTheFileAndWhatIsWrong(t *testing.T) {
	testruntime.Init(t)
	good, err := os.ReadFile(testruntime.ModelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	swapped := append([]string(nil), labels...)
	swapped[1], swapped[7] = swapped[7], swapped[1] // Jupiter <-> Saturn
	flipped := append([]byte(nil), good...)
	for i := 100; i < 200; i++ {
		flipped[i] ^= 0xff
	}
	for _, tc := range []struct {
		name  string
		model []byte
		// declared are the labels of the declaration written beside the
		// model: the committed ones when nil.
		declared []string
		// want are parts of the one line; the model's path (the
		// declaration's, with inDeclaration) is always one.
		want          []string
		inReport      bool // the problem is the report's (the model itself loads)
		inDeclaration bool // the problem is the declaration's
	}{
		{"empty", nil, nil, []string{"empty file"}, false, false},
		{"not ONNX", []byte("this is not an ONNX model\n"), nil, []string{"Protobuf parsing failed"}, false, false},
		{"truncated to 1 KB", good[:1024], nil, []string{"failed"}, false, false},
		{"truncated to half", good[:len(good)/2], nil, []string{"failed"}, false, false},
		{"last byte missing", good[:len(good)-1], nil, []string{"failed"}, false, false},
		{"bytes flipped in the header", flipped, nil, []string{"failed"}, false, false},
		{"nine labels for ten outputs", testruntime.Relabel(t, good, labels[:9]), labels[:9], []string{`labels: 9 names, but the output "logits" is [N,10]: want 10 labels`}, false, true},
		{"eleven labels for ten outputs", testruntime.Relabel(t, good, append(append([]string(nil), labels...), "Sun")), append(append([]string(nil), labels...), "Sun"), []string{"labels: 11 names", "want 10 labels"}, false, true},
		{"a label twice", testruntime.Relabel(t, good, append(append([]string(nil), labels[:9]...), "Earth")), append(append([]string(nil), labels[:9]...), "Earth"), []string{`labels: empty or repeated label "Earth"`}, false, true},
		{"metadata and declaration disagree", testruntime.Relabel(t, good, swapped), labels, []string{`labels: `, `but the model's "labels" metadata names`}, false, true},
		{"labels swapped", testruntime.Relabel(t, good, swapped), swapped, []string{"report.json: does not match", "Jupiter", "Saturn", "go run ./cmd/evaluate"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := committed(t)
			dir := t.TempDir()
			opts.ModelPath = filepath.Join(dir, "planets.onnx")
			if err := os.WriteFile(opts.ModelPath, tc.model, 0o644); err != nil {
				t.Fatal(err)
			}
			declared := tc.declared
			if declared == nil {
				declared = labels
			}
			declPath := testruntime.Declare(t, dir, declared)
			summary, err := evaluate.Check(context.Background(), opts)
			if err == nil {
				t.Fatalf("the check passed: %s", summary)
			}
			msg := err.Error()
			t.Logf("%s", msg)
			if !errors.Is(err, evaluate.ErrCheck) || !strings.HasPrefix(msg, "model check failed: ") {
				t.Errorf("not a model check error: %q", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("more than one line: %q", msg)
			}
			named := opts.ModelPath
			if tc.inDeclaration {
				named = declPath
			}
			wants := append([]string{named}, tc.want...)
			if tc.inReport {
				wants = append(wants, opts.ReportPath)
			}
			for _, w := range wants {
				if !strings.Contains(msg, w) {
					t.Errorf("the error does not say %q", w)
				}
			}
		})
	}
}

// A report that does not follow from the model's answers, or of another
// evaluation set, fails the check too: the committed report cannot lie.
func TestCheckRefusesAReportThatLies(t *testing.T) {
	testruntime.Init(t)
	opts := committed(t)
	report, err := evaluate.Read(opts.ReportPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(r *evaluate.Report)
		want string
	}{
		{"a better accuracy", func(r *evaluate.Report) { r.Accuracy, r.Correct = 1, r.Total }, "do not follow from its answers"},
		{"an answer changed", func(r *evaluate.Report) {
			for i := range r.Images {
				if r.Images[i].Predicted != r.Images[i].Label {
					r.Images[i].Predicted = r.Images[i].Label
				}
			}
		}, "it says"},
		{"another set", func(r *evaluate.Report) { r.EvalSet.SHA256 = strings.Repeat("0", 64) }, "another evaluation set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lie := *report
			lie.Images = append([]evaluate.Answer(nil), report.Images...)
			tc.edit(&lie)
			path := filepath.Join(t.TempDir(), "report.json")
			if err := lie.Write(path); err != nil {
				t.Fatal(err)
			}
			o := opts
			o.ReportPath = path
			_, err := evaluate.Check(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("check: %v; want an error naming %s and saying %q", err, path, tc.want)
			}
		})
	}
	// A set with one image fewer is another set.
	set := t.TempDir()
	if err := os.CopyFS(set, os.DirFS(opts.EvalDir)); err != nil {
		t.Fatal(err)
	}
	first, _ := filepath.Glob(filepath.Join(set, "Earth", "*.png"))
	os.Remove(first[0])
	o := opts
	o.EvalDir = set
	if _, err := evaluate.Check(context.Background(), o); err == nil || !strings.Contains(err.Error(), "another evaluation set") {
		t.Errorf("check with an image removed from the set: %v", err)
	}
}
