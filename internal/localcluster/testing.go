package localcluster

import (
	"context"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/internal/testenv"
)

// ToolchainBin returns $MLOPS_TOOLCHAIN_BIN for a test that needs the real
// binaries: a proof of the full tier (testenv.NeedToolchain decides whether
// the test runs, fails or is skipped; -short skips it).
func ToolchainBin(t testing.TB) string {
	t.Helper()
	return testenv.NeedToolchain(t)
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
