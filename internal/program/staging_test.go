package program

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

// An Automation API inline program runs in its caller's working directory,
// while the engine's project directory (where the docker provider resolves
// the build context) is the workspace's: the program must stage into the
// project root it is given and still hand docker the relative path.
func TestInlineProgramStagesTheContextInItsProjectRootAndGivesDockerARelativePath(t *testing.T) {
	w := newWorkspace(t, nil)
	elsewhere := t.TempDir()
	t.Chdir(elsewhere)

	mocks := &mocktest.Mocks{}
	if err := mocks.Run(Program(w.root), w.config); err != nil {
		t.Fatalf("program failed: %v", err)
	}
	image := mocks.One(t, "docker:index/image:Image")
	if got := image.Str("build.context"); got != ".build/model-context" {
		t.Errorf("build.context = %q, want the relative .build/model-context", got)
	}
	if got := image.Str("build.dockerfile"); got != ".build/model-context/Dockerfile" {
		t.Errorf("build.dockerfile = %q, want .build/model-context/Dockerfile", got)
	}
	if _, err := os.Stat(filepath.Join(w.root, ".build", "model-context", "Dockerfile")); err != nil {
		t.Errorf("the context is not staged in the project root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, ".build")); !os.IsNotExist(err) {
		t.Errorf("the program staged into its working directory %s", elsewhere)
	}
}
