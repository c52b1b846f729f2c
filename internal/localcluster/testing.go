package localcluster

import (
	"context"
	"os"
	"testing"
	"time"
)

// ToolchainBin returns $MLOPS_TOOLCHAIN_BIN for a test that needs the real
// binaries. Unset, the test fails in CI, where it must never be skipped
// silently, and skips loudly elsewhere; -short skips it too.
func ToolchainBin(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real control plane and the Pulumi CLI; skipped with -short")
	}
	bin := os.Getenv("MLOPS_TOOLCHAIN_BIN")
	if bin == "" {
		const msg = "MLOPS_TOOLCHAIN_BIN is unset, so this test did NOT run.\n" +
			"\tBuild the toolchain (once, cached) and point the tests at it:\n" +
			"\t    export MLOPS_TOOLCHAIN_BIN=$(hack/toolchain.sh)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("\n\n*** SKIPPED: " + msg + "\n")
	}
	return bin
}

// StartForTest starts a control plane that stops when the test ends.
func StartForTest(ctx context.Context, t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	cluster, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := cluster.Stop(stopCtx); err != nil {
			t.Errorf("stop local cluster: %v", err)
		}
	})
	return cluster
}
