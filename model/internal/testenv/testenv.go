// Package testenv is the model module's copy of the root module's
// internal/testenv (a module cannot import another's internal packages),
// reduced to what model/'s tests need. MLOPS_TEST_TIER decides:
//
//   - full (hack/test.sh): a test that lacks root, a cgroup memory
//     controller or the planets dataset fails, saying what is missing;
//   - hermetic (hack/test.sh --hermetic): such a test is skipped with a
//     message, whether or not this machine has it;
//   - unset (a plain `go test`): it runs when it can, and is skipped loudly
//     when not.
//
// onnxruntime is installed by both tiers: without it a test fails whenever
// a tier is set. CI=true means nothing here.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

const tierVar = "MLOPS_TEST_TIER"

func tier(t testing.TB) string {
	t.Helper()
	switch v := os.Getenv(tierVar); v {
	case "full", "hermetic", "":
		return v
	default:
		t.Fatalf("%s=%q: want full, hermetic or unset", tierVar, v)
		return ""
	}
}

// NeedProof is for what only the full tier provides (need names it; check
// says why it is missing, nil when present, and is not called in the
// hermetic tier).
func NeedProof(t testing.TB, need string, check func() error) {
	t.Helper()
	tr := tier(t)
	if tr == "hermetic" {
		t.Skipf("hermetic tier: needs %s; it runs in the full tier (hack/test.sh)", need)
	}
	if err := check(); err != nil {
		msg := fmt.Sprintf("needs %s: %v", need, err)
		if tr == "full" {
			t.Fatal(msg)
		}
		t.Skipf("\n\n*** SKIPPED: %s\n\tThis test did NOT run (%s=full makes it fail instead).\n", msg, tierVar)
	}
}

// NeedTool is for what every tier installs (install says how).
func NeedTool(t testing.TB, need, install string, check func() error) {
	t.Helper()
	if err := check(); err != nil {
		msg := fmt.Sprintf("needs %s: %v (%s)", need, err, install)
		if tier(t) != "" {
			t.Fatal(msg)
		}
		t.Skipf("\n\n*** SKIPPED: %s\n", msg)
	}
}

// NeedDataset returns the planets dataset's directory: $PLANETS_DATA, else
// ../shared/datasets/planets beside the repository (repo).
func NeedDataset(t testing.TB, repo string) string {
	t.Helper()
	data := os.Getenv("PLANETS_DATA")
	if data == "" {
		data = filepath.Join(repo, "..", "shared", "datasets", "planets")
	}
	NeedProof(t, "the planets dataset", func() error {
		if m, _ := filepath.Glob(filepath.Join(data, "raw", "*", "*.jpg")); len(m) == 0 {
			return fmt.Errorf("no JPEGs under %s (set PLANETS_DATA)", filepath.Join(data, "raw"))
		}
		return nil
	})
	return data
}
