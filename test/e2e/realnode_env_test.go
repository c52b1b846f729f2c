package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/planets-mlops/deploy/internal/dataset"
	"github.com/planets-mlops/deploy/internal/localcloud/dockerd"
	"github.com/planets-mlops/deploy/internal/localcloud/modelimage"
	"github.com/planets-mlops/deploy/internal/localcloud/registry"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// e2eRealNodeEnv is what the real-node proofs need besides the cluster: a
// Docker engine to build the model image, the local registry the node pulls
// from, and the held-out images of every class.
type e2eRealNodeEnv struct {
	docker   dockerd.CLI
	registry string // 127.0.0.1:<port>
	heldOut  []dataset.Image
	repoDir  string
}

func e2eRealNodeEnvironment(t *testing.T) *e2eRealNodeEnv {
	t.Helper()
	env := &e2eRealNodeEnv{docker: fixture.Docker(t), heldOut: fixture.HeldOut(t, ".")}
	var err error
	if env.repoDir, err = filepath.Abs("."); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg.Close(); err != nil {
			t.Errorf("close the local registry: %v", err)
		}
	})
	env.registry = reg.Host
	return env
}

// build builds the model image from modelDir (a copy of model/ that the
// test changes) with model/Dockerfile on the stand-in bases, pushes it to
// the local registry, and returns its reference pinned by digest.
// tryBuild is build that returns the build's error (the hack/ link must exist).
func (env *e2eRealNodeEnv) tryBuild(ctx context.Context, t *testing.T, modelDir string) (*modelimage.Image, error) {
	return modelimage.Build(ctx, env.docker, modelimage.BuildOptions{
		ProjectDir: filepath.Dir(modelDir), StageRoot: t.TempDir(), Registry: env.registry, Name: "planet-classifier",
	})
}

func (env *e2eRealNodeEnv) build(ctx context.Context, t *testing.T, modelDir string) string {
	t.Helper()
	// modelimage builds <project>/model with <project>/hack's stand-in
	// bases: the test's model is the model/ of a project whose hack/ is the
	// repository's.
	project := filepath.Dir(modelDir)
	if filepath.Base(modelDir) != "model" {
		t.Fatalf("model dir %s: expected a directory named model", modelDir)
	}
	if _, err := os.Lstat(filepath.Join(project, "hack")); err != nil {
		if err := os.Symlink(filepath.Join(env.repoDir, "hack"), filepath.Join(project, "hack")); err != nil {
			t.Fatal(err)
		}
	}
	image, err := env.tryBuild(ctx, t, modelDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built and pushed %s (%.1f MB)", image.Ref, float64(image.Size)/1e6)
	return image.Ref
}
