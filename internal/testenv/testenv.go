// Package testenv decides, in one place, whether a test can run here.
//
// The tests come in two tiers, chosen by MLOPS_TEST_TIER:
//
//   - full (hack/test.sh, and so .ci/run): every proof. A test that lacks
//     what it needs (root, a Docker engine, the end-to-end toolchain, the
//     planets dataset) fails, saying what is missing.
//   - hermetic (hack/test.sh --hermetic, the gate of the user's pipelines on
//     hosted runners): the tests that need only Go, the repository and a few
//     installable tools. A test that needs one of the above is skipped, with
//     a message naming it, whether or not this machine has it, so that the
//     gate runs the same tests on every runner.
//
// Unset (a plain `go test`), a test runs when what it needs is here and is
// skipped loudly when not. CI=true means nothing here: a hosted runner sets
// it, and the tier, not the runner, says what must run.
//
// Tools that every tier installs (jq, curl, shellcheck, onnxruntime) are
// needed in both tiers: missing, the test fails whenever a tier is set.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Tier values of MLOPS_TEST_TIER.
const (
	Full     = "full"
	Hermetic = "hermetic"
)

// TierVar is the environment variable that names the tier.
const TierVar = "MLOPS_TEST_TIER"

// Tier is the tier this test run is in: Full, Hermetic or "" (unset).
// Another value stops the test: a typo must not turn proofs into skips.
func Tier(t testing.TB) string {
	t.Helper()
	switch tier := os.Getenv(TierVar); tier {
	case Full, Hermetic, "":
		return tier
	default:
		t.Fatalf("%s=%q: want %q, %q or unset", TierVar, tier, Full, Hermetic)
		return ""
	}
}

// NeedProof is for what only the full tier provides: need names it ("root",
// "a Docker engine", ...), check reports why it is missing here (nil when
// present). In the hermetic tier the test is skipped without calling check.
// Missing, the test fails in the full tier and is skipped loudly otherwise.
func NeedProof(t testing.TB, need string, check func() error) {
	t.Helper()
	tier := Tier(t)
	if tier == Hermetic {
		t.Skipf("hermetic tier: needs %s; it runs in the full tier (hack/test.sh)", need)
	}
	err := check()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("needs %s: %v", need, err)
	if tier == Full {
		t.Fatal(msg)
	}
	t.Skipf("\n\n*** SKIPPED: %s\n\tThis test did NOT run (%s=%s makes it fail instead).\n", msg, TierVar, Full)
}

// NeedTool is for what every tier installs: missing, the test fails when a
// tier is set and is skipped loudly otherwise. install says how to get it.
func NeedTool(t testing.TB, need, install string, check func() error) {
	t.Helper()
	err := check()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("needs %s: %v (%s)", need, err, install)
	if Tier(t) != "" {
		t.Fatal(msg)
	}
	t.Skipf("\n\n*** SKIPPED: %s\n", msg)
}

// NeedCommand needs a command on PATH that both tiers install.
func NeedCommand(t testing.TB, name string) {
	t.Helper()
	NeedTool(t, name, "apt-get install "+name, func() error {
		_, err := exec.LookPath(name)
		return err
	})
}

// NeedRoot needs uid 0 (a real node runs containers, mounts and iptables).
func NeedRoot(t testing.TB) {
	t.Helper()
	NeedProof(t, "root", func() error {
		if uid := os.Geteuid(); uid != 0 {
			return fmt.Errorf("running as uid %d", uid)
		}
		return nil
	})
}

// NeedToolchain returns $MLOPS_TOOLCHAIN_BIN, the binaries hack/toolchain.sh
// builds (pulumi, the control plane, the node). -short skips too.
func NeedToolchain(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the end-to-end toolchain; skipped with -short")
	}
	bin := os.Getenv("MLOPS_TOOLCHAIN_BIN")
	NeedProof(t, "the end-to-end toolchain", func() error {
		if bin == "" {
			return errors.New("MLOPS_TOOLCHAIN_BIN is unset; build it once (cached) with: export MLOPS_TOOLCHAIN_BIN=$(hack/toolchain.sh)")
		}
		if _, err := os.Stat(filepath.Join(bin, "pulumi")); err != nil {
			return fmt.Errorf("MLOPS_TOOLCHAIN_BIN=%s: %w", bin, err)
		}
		return nil
	})
	return bin
}

// NeedDocker needs a Docker engine; find is how the caller looks for one
// (internal/localcloud/dockerd.Find), so this package imports none of it.
func NeedDocker(t testing.TB, find func() error) {
	t.Helper()
	NeedProof(t, "a Docker engine", find)
}

// DatasetDir is where the planets dataset is: $PLANETS_DATA, else
// ../shared/datasets/planets beside the project directory.
func DatasetDir(projectDir string) string {
	if data := os.Getenv("PLANETS_DATA"); data != "" {
		return data
	}
	return filepath.Join(projectDir, "..", "shared", "datasets", "planets")
}

// NeedDataset returns the planets dataset's directory (it holds raw/).
func NeedDataset(t testing.TB, projectDir string) string {
	t.Helper()
	data := DatasetDir(projectDir)
	NeedProof(t, "the planets dataset", func() error {
		if _, err := os.Stat(filepath.Join(data, "raw")); err != nil {
			return fmt.Errorf("it is not at %s (set PLANETS_DATA): %w", data, err)
		}
		return nil
	})
	return data
}
