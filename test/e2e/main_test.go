// Package e2e holds the end-to-end proofs: the real Pulumi CLI and
// Kubernetes provider (hack/toolchain.sh) drive the program
// (internal/program) through the Automation API against a real local
// control plane (internal/localcloud/cluster), with fake nodes or a real
// one, images built from model/Dockerfile and a registry on 127.0.0.1
// (internal/localcloud). What each proof needs is decided by
// internal/testenv: in the full tier (hack/test.sh, .ci/run) a missing need
// fails, elsewhere it is skipped loudly. Nothing leaves 127.0.0.1.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestMain runs the proofs from the repository's root, as `pulumi up` runs
// the program: Pulumi.yaml, model/ and testdata/ are where the program and
// the proofs look for them.
func TestMain(m *testing.M) {
	if err := os.Chdir(filepath.Join("..", "..")); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
