package modelreport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func read(t *testing.T, path string) *Report {
	t.Helper()
	r, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var (
	committedReport = filepath.Join("..", "..", "model", "artifacts", "report.json")
	seed78Report    = filepath.Join("..", "..", "testdata", "seed78", "model", "artifacts", "report.json")
	swappedReport   = filepath.Join("..", "..", "testdata", "swapped-labels", "model", "artifacts", "report.json")
)

// The committed reports decode strictly (unknown fields refused): this
// package and model/internal/evaluate agree on the schema.
func TestCommittedReportsDecode(t *testing.T) {
	for _, p := range []string{committedReport, seed78Report, swappedReport} {
		r := read(t, p)
		if r.Total != 100 || len(r.Classes) != 10 || len(r.Images) != 100 || r.Latency.TotalP50Ms <= 0 {
			t.Errorf("%s: %d images, %d classes, latency %+v", p, r.Total, len(r.Classes), r.Latency)
		}
	}
	if _, err := Decode(strings.NewReader(`{"format":"planets-model-report/v1","surprise":1}`), "x"); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Errorf("unknown field: %v", err)
	}
	if _, err := Decode(strings.NewReader(`{"format":"planets-model-report/v0"}`), "x"); err == nil || !strings.Contains(err.Error(), "format") {
		t.Errorf("other format: %v", err)
	}
}

func TestForModelRefusesAReportOfAnotherModel(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "artifacts"), 0o755)
	copyFile := func(from, to string) {
		raw, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(filepath.Join("..", "..", "model", "artifacts", "planets.onnx"), ModelPath)
	if _, err := ForModel(dir); err == nil || !strings.Contains(err.Error(), "has no report") {
		t.Errorf("no report: %v", err)
	}
	copyFile(seed78Report, Path)
	_, err := ForModel(dir)
	if err == nil || !strings.Contains(err.Error(), "is the report of another model") || !strings.Contains(err.Error(), "go run ./cmd/evaluate") {
		t.Errorf("seed78's report beside the committed model: %v", err)
	}
	copyFile(committedReport, Path)
	if _, err := ForModel(dir); err == nil || !strings.Contains(err.Error(), "has no declaration") || !strings.Contains(err.Error(), DeclarationPath) {
		t.Errorf("no declaration: %v", err)
	}
	// The swapped-labels model's declaration: not the one the report was
	// made with, so the model would be fed or read otherwise.
	copyFile(filepath.Join("..", "..", "testdata", "swapped-labels", "model", "artifacts", "model.json"), DeclarationPath)
	if _, err := ForModel(dir); err == nil || !strings.Contains(err.Error(), "was not made with the declaration") {
		t.Errorf("another declaration: %v", err)
	}
	copyFile(filepath.Join("..", "..", "model", "artifacts", "model.json"), DeclarationPath)
	if r, err := ForModel(dir); err != nil || r.Correct != 99 {
		t.Errorf("the committed model, declaration and report: %v", err)
	}
}

func TestGate(t *testing.T) {
	committed, seed78, swapped := read(t, committedReport), read(t, seed78Report), read(t, swappedReport)
	defaults := Gate{MinAccuracy: 0.9, MaxAccuracyDrop: 0.05}
	for _, tc := range []struct {
		name     string
		gate     Gate
		r, base  *Report
		want     []string // nil: passes
		wantNone []string
	}{
		{"committed, no baseline", defaults, committed, nil, nil, nil},
		{"seed78 against committed", defaults, seed78, committed, nil, nil},
		{"swapped: both", defaults, swapped, committed,
			[]string{"mlops:minAccuracy is 90.0%", "79.0% (79/100)", "classes below 90.0%: Saturn 0.0% (0/10), Jupiter 0.0% (0/10)",
				"mlops:maxAccuracyDrop is 5.0%", "fell by 20.0%, from 99.0% (main's report", "Saturn 100.0% -> 0.0%, Jupiter 100.0% -> 0.0%"},
			[]string{"Moon"}},
		{"swapped: gate off", Gate{MinAccuracy: 0, MaxAccuracyDrop: 1}, swapped, committed, nil, nil},
		{"swapped: only the floor, no baseline", defaults, swapped, nil, []string{"mlops:minAccuracy"}, []string{"maxAccuracyDrop is"}},
		{"a floor above the committed model", Gate{MinAccuracy: 1, MaxAccuracyDrop: 1}, committed, nil, []string{"mlops:minAccuracy is 100.0%", "99.0% (99/100)", "Moon 90.0% (9/10)"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.gate.Check(tc.r, tc.base, "main's report")
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("passed")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("does not say %q", w)
				}
			}
			for _, w := range tc.wantNone {
				if strings.Contains(err.Error(), w) {
					t.Errorf("says %q", w)
				}
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	committed, seed78, swapped := read(t, committedReport), read(t, seed78Report), read(t, swappedReport)
	for _, tc := range []struct {
		name     string
		change   Change
		want     []string
		wantNone []string
	}{
		{"only infrastructure", Change{Old: committed, New: committed, OldFingerprint: "aaaaaaaaaaaa1111", NewFingerprint: "aaaaaaaaaaaa1111"},
			[]string{"**The model is unchanged** (fingerprint `aaaaaaaaaaaa`)", "only the infrastructure", "99.0% (99/100)"}, []string{"| accuracy"}},
		{"server changed, same answers", Change{Old: committed, New: committed, OldFingerprint: "aaaaaaaaaaaa", NewFingerprint: "bbbbbbbbbbbb"},
			[]string{"**The model file is unchanged**", "fingerprint `aaaaaaaaaaaa` -> `bbbbbbbbbbbb`"}, []string{"| accuracy"}},
		{"no fingerprints, same model", Change{Old: committed, New: committed}, []string{"**The model file is unchanged**"}, []string{"fingerprint"}},
		{"labels swapped", Change{Old: committed, New: swapped, OldFingerprint: "aaaaaaaaaaaa", NewFingerprint: "cccccccccccc"},
			[]string{"**The model changes**", "sha256 `60d4d14a0680` -> `" + swapped.Model.SHA256[:12] + "`", "(the same 100 images)",
				"| **accuracy** | 99.0% (99/100) | **79.0%** (79/100) | **-20.0 pts** |",
				"| :small_red_triangle_down: Jupiter | 100.0% (10/10) | **0.0%** (0/10) | **-100.0 pts** |",
				"| :small_red_triangle_down: Saturn | 100.0% (10/10) | **0.0%** (0/10) | **-100.0 pts** |",
				"| Moon | 90.0% (9/10) | 90.0% (9/10) | = |", "| size | 824.5 KB | 824.5 KB | -9 bytes |",
				"**The labels are in another order**"}, nil},
		{"second model", Change{Old: committed, New: seed78}, []string{"**The model changes**", "| **accuracy** | 99.0% (99/100) | **99.0%** (99/100) | = |", "Labels unchanged."},
			[]string{"small_red_triangle_down"}},
		{"no baseline", Change{New: committed}, []string{"no model report yet", "| **accuracy** | **99.0%** (99/100) |", "| Moon | 90.0% (9/10) |"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := tc.change.Markdown()
			t.Log("\n" + md)
			for _, w := range tc.want {
				if !strings.Contains(md, w) {
					t.Errorf("lacks %q", w)
				}
			}
			for _, w := range tc.wantNone {
				if strings.Contains(md, w) {
					t.Errorf("has %q", w)
				}
			}
		})
	}
	// Worse classes come first, in order of how far they fell.
	md := Change{Old: committed, New: swapped}.Markdown()
	if strings.Index(md, "Jupiter |") > strings.Index(md, "| Earth |") {
		t.Errorf("the classes that got worse are not first:\n%s", md)
	}
}

// A model DVC tracks is matched to its report by the MD5 and size DVC
// recorded, without its bytes.
func TestTheReportOfADVCModelIsMatchedByItsMD5(t *testing.T) {
	dir := "../../testdata/dvc-guide/model"
	const md5, size = "0e58ef2c0057a92d656189cb73d8e649", 824489
	r, err := ForDVCOutput(dir, md5, size, "dvc.lock (stage train)")
	if err != nil || r.Model.MD5 != md5 {
		t.Fatalf("fixture report: %+v, %v", r, err)
	}
	if _, err := ForDVCOutput(dir, "ffffffffffffffffffffffffffffffff", size, "dvc.lock (stage train)"); err == nil || !strings.Contains(err.Error(), "is the report of another model (md5 "+md5) {
		t.Errorf("another md5: %v", err)
	}
	if _, err := ForDVCOutput("../../model", md5, size, "dvc.lock (stage train)"); err == nil || !strings.Contains(err.Error(), "names its model by sha256 only") {
		t.Errorf("a report without md5: %v", err)
	}
}

// The models unlike ours (model/testdata/models: the guide's Keras-shaped
// model, 64x64 RGB, three classes, probabilities out; see
// training/make_test_models.py) each have a report made with their
// declaration, which the gate reads and passes at its defaults.
func TestTheGateReadsModelsUnlikeOurs(t *testing.T) {
	defaults := Gate{MinAccuracy: 0.9, MaxAccuracyDrop: 0.05}
	for _, name := range []string{"guide", "rgb64", "three", "probs"} {
		dir := filepath.Join("..", "..", "model", "testdata", "models", name)
		r, err := ForModel(dir)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if err := defaults.Check(r, nil, ""); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		t.Logf("%s: accuracy %.3f (%d/%d), %d labels", name, r.Accuracy, r.Correct, r.Total, len(r.Model.Labels))
	}
}
