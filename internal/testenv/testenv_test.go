package testenv

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB whose Fatal and Skip record the outcome and stop
// the function under test (as the real ones do, with runtime.Goexit).
type recorder struct {
	testing.TB
	outcome, msg string
}

type stop struct{}

func (r *recorder) Helper() {}
func (r *recorder) Fatal(args ...any) {
	r.outcome, r.msg = "fail", fmt.Sprint(args...)
	panic(stop{})
}
func (r *recorder) Fatalf(format string, args ...any) { r.Fatal(fmt.Sprintf(format, args...)) }
func (r *recorder) Skip(args ...any) {
	r.outcome, r.msg = "skip", fmt.Sprint(args...)
	panic(stop{})
}
func (r *recorder) Skipf(format string, args ...any) { r.Skip(fmt.Sprintf(format, args...)) }

// run calls f with a recorder and reports what happened: "run", "skip" or
// "fail", and the message.
func run(t *testing.T, f func(testing.TB)) (outcome, msg string) {
	r := &recorder{TB: t, outcome: "run"}
	func() {
		defer func() {
			if p := recover(); p != nil {
				if _, ok := p.(stop); !ok {
					panic(p)
				}
			}
		}()
		f(r)
	}()
	return r.outcome, r.msg
}

func TestTheTierDecides(t *testing.T) {
	missing := func() error { return errors.New("it is not here") }
	present := func() error { return nil }
	for _, tc := range []struct {
		tier, what string
		need       func(testing.TB)
		want       string
		wantMsg    string
	}{
		{Full, "a proof's need, missing", func(t testing.TB) { NeedProof(t, "root", missing) }, "fail", "needs root: it is not here"},
		{Full, "a proof's need, present", func(t testing.TB) { NeedProof(t, "root", present) }, "run", ""},
		{Hermetic, "a proof's need, present", func(t testing.TB) { NeedProof(t, "root", present) }, "skip", "hermetic tier: needs root"},
		{Hermetic, "a proof's need, missing", func(t testing.TB) { NeedProof(t, "root", missing) }, "skip", "hermetic tier: needs root"},
		{"", "a proof's need, missing", func(t testing.TB) { NeedProof(t, "root", missing) }, "skip", "SKIPPED: needs root: it is not here"},
		{"", "a proof's need, present", func(t testing.TB) { NeedProof(t, "root", present) }, "run", ""},
		{Full, "a tool, missing", func(t testing.TB) { NeedTool(t, "jq", "apt-get install jq", missing) }, "fail", "needs jq: it is not here (apt-get install jq)"},
		{Hermetic, "a tool, missing", func(t testing.TB) { NeedTool(t, "jq", "apt-get install jq", missing) }, "fail", "needs jq"},
		{Hermetic, "a tool, present", func(t testing.TB) { NeedTool(t, "jq", "apt-get install jq", present) }, "run", ""},
		{"", "a tool, missing", func(t testing.TB) { NeedTool(t, "jq", "apt-get install jq", missing) }, "skip", "SKIPPED: needs jq"},
		{"fast", "a misspelt tier", func(t testing.TB) { NeedProof(t, "root", present) }, "fail", `MLOPS_TEST_TIER="fast"`},
	} {
		t.Run(fmt.Sprintf("%q/%s", tc.tier, tc.what), func(t *testing.T) {
			t.Setenv(TierVar, tc.tier)
			got, msg := run(t, tc.need)
			if got != tc.want || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("%s (%q), want %s (%q)", got, msg, tc.want, tc.wantMsg)
			}
		})
	}
}

// The hermetic tier never looks: a Docker engine that takes 30 s to not
// answer, or a machine that happens to have one, changes nothing there.
func TestHermeticTierDoesNotLook(t *testing.T) {
	t.Setenv(TierVar, Hermetic)
	looked := false
	if got, _ := run(t, func(t testing.TB) { NeedDocker(t, func() error { looked = true; return nil }) }); got != "skip" || looked {
		t.Errorf("outcome %s, looked %v; want a skip without looking", got, looked)
	}
}

// CI=true, as every hosted runner sets it, fails nothing by itself.
func TestCIAloneFailsNothing(t *testing.T) {
	t.Setenv("CI", "true")
	t.Setenv(TierVar, "")
	t.Setenv("MLOPS_TOOLCHAIN_BIN", "")
	t.Setenv("PLANETS_DATA", t.TempDir())
	for name, need := range map[string]func(testing.TB){
		"toolchain": func(t testing.TB) { NeedToolchain(t) },
		"dataset":   func(t testing.TB) { NeedDataset(t, t.TempDir()) },
		"docker":    func(t testing.TB) { NeedDocker(t, func() error { return errors.New("no engine") }) },
	} {
		if got, msg := run(t, need); got != "skip" {
			t.Errorf("%s: %s (%q), want a loud skip", name, got, msg)
		}
	}
	t.Setenv(TierVar, Full)
	if got, _ := run(t, func(t testing.TB) { NeedToolchain(t) }); got != "fail" {
		t.Errorf("full tier without the toolchain: %s, want fail", got)
	}
}

func TestDatasetDir(t *testing.T) {
	t.Setenv("PLANETS_DATA", "")
	if got, want := DatasetDir("/x/repo"), "/x/shared/datasets/planets"; got != want {
		t.Errorf("DatasetDir = %q, want %q", got, want)
	}
	t.Setenv("PLANETS_DATA", "/data")
	if got := DatasetDir("/x/repo"); got != "/data" {
		t.Errorf("DatasetDir with PLANETS_DATA = %q", got)
	}
}
