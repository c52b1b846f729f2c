package e2e

import (
	"context"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"k8s.io/client-go/kubernetes"

	"github.com/planets-mlops/deploy/internal/dvc"
	"github.com/planets-mlops/deploy/internal/fingerprint"
	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
	"github.com/planets-mlops/deploy/internal/localcloud/modelimage"
	"github.com/planets-mlops/deploy/internal/localcloud/pulumienv"
	"github.com/planets-mlops/deploy/internal/modelreport"
	"github.com/planets-mlops/deploy/internal/testenv/fakegcs"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// The guide's shape on a real node: a repository with dvc.yaml, dvc.lock
// and .dvc/config naming a gs:// remote (testdata/dvc-guide), the ONNX
// file only in that bucket, served by a Cloud Storage server on 127.0.0.1.
// The image is built from a context staged by fetching the model from the
// bucket (verified against dvc.lock's MD5), the real engine deploys it with
// the model taken from DVC (fingerprint by DVC's MD5, gate by the report's
// md5), the Service answers /predict as the model training measured, and a
// second up changes nothing and sends no request to the bucket.
//
// The local toolchain has no docker provider, so the image is built beside
// the program (internal/localcloud/modelimage, as the other real-node
// proofs) and given as mlops:image; the program's own fetch-to-build, under
// the docker provider, is proven with it mocked (internal/program/dvc_test.go).
func TestE2EDVCModelOnARealNode(t *testing.T) {
	pulumiEnv := fixture.Pulumi(t)
	env := e2eRealNodeEnvironment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	timed := func(step string, since time.Time) { t.Logf("TIMING %-45s %6.1fs", step, time.Since(since).Seconds()) }

	// The guide-shaped repository: this repository's model/ without its
	// ONNX file, and the fixture's DVC files at the root.
	modelDir := e2eCopyModel(t, pulumiEnv.Dir)
	workspace := filepath.Dir(modelDir)
	if err := os.Remove(filepath.Join(modelDir, "artifacts", "planets.onnx")); err != nil {
		t.Fatal(err)
	}
	// Over the copy: the fixture's report names the model by its md5.
	fixtureDir := filepath.Join("testdata", "dvc-guide")
	err := filepath.WalkDir(fixtureDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(fixtureDir, path)
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		os.MkdirAll(filepath.Dir(filepath.Join(workspace, rel)), 0o755)
		return os.WriteFile(filepath.Join(workspace, rel), raw, 0o644)
	})
	if err != nil {
		t.Fatalf("copy testdata/dvc-guide: %v", err)
	}
	lock := filepath.Join(workspace, "dvc.lock")
	output, err := dvc.ReadLock(lock, "model/"+modelreport.ModelPath)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := dvc.FindRepo(lock)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := dvc.ReadRemote(repo, "")
	if err != nil {
		t.Fatal(err)
	}
	if !remote.IsGCS() {
		t.Fatalf("the fixture's remote is %s, want the guide's gs:// bucket", remote.URL)
	}
	model, err := os.ReadFile(e2eSecondModel)
	if err != nil {
		t.Fatal(err)
	}
	bucket := fakegcs.Start(t)
	bucket.Put(remote.Bucket, strings.TrimPrefix(remote.ObjectURL(output), "gs://"+remote.Bucket+"/"), model)

	step := time.Now()
	fetcher := dvc.NewFetcher(remote)
	defer fetcher.Close()
	image, err := modelimage.Build(ctx, env.docker, modelimage.BuildOptions{
		ProjectDir: e2eProjectWithHack(t, env, workspace), StageRoot: t.TempDir(), Registry: env.registry, Name: "planet-classifier",
		Externals: []fingerprint.External{{Path: modelreport.ModelPath, MD5: output.MD5, Size: output.Size, Fetch: func(w io.Writer) error {
			return fetcher.Fetch(ctx, output, w)
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	timed("fetch from the bucket, build and push", step)
	fetched := bucket.Requests()
	t.Logf("built %s from the bucket's model (%d requests)", image.Ref, fetched)
	if fetched == 0 {
		t.Fatal("the image was built without a request to the bucket")
	}

	step = time.Now()
	local := fixture.Cluster(ctx, t, cluster.Options{
		RealNode: true, Registries: []string{env.registry}, Dir: filepath.Join(pulumiEnv.Dir, "cluster"),
	})
	kube, err := kubernetes.NewForConfig(local.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	timed("start control plane and real node", step)

	stack := e2eStack(ctx, t, pulumiEnv, pulumienv.KubernetesTarget(local, image.Ref, modelDir, "NodePort"), map[string]auto.ConfigValue{
		"mlops:progressDeadlineSeconds": {Value: e2eProgressDeadline},
		"mlops:modelDvcFile":            {Value: lock},
	})

	step = time.Now()
	first := fixture.Up(ctx, t, stack)
	timed("first up (DVC model)", step)
	if n := bucket.Requests() - fetched; n != 0 {
		t.Errorf("the up sent %d requests to the bucket, want 0 (the image was built)", n)
	}
	if got := first.Outputs["modelFingerprint"].Value; got != image.Fingerprint {
		t.Errorf("the program fingerprints the DVC model as %v, the image was built as %s", got, image.Fingerprint)
	}
	baseURL := e2eNodePortURL(ctx, t, kube)
	pods := e2eServingPods(ctx, t, kube, image.Ref)
	e2eAssertHeldOutAnswers(ctx, t, baseURL, env.heldOut, e2eSecondModelProject)

	step = time.Now()
	second := fixture.Up(ctx, t, stack)
	timed("second up (no-op)", step)
	e2eAssertOnlySame(t, "second up", e2eChanges(second.Summary.ResourceChanges))
	if n := bucket.Requests() - fetched; n != 0 {
		t.Errorf("the no-op up sent %d requests to the bucket, want 0", n)
	}
	if got := e2ePodUIDs(e2eServingPods(ctx, t, kube, image.Ref)); !maps.Equal(got, e2ePodUIDs(pods)) {
		t.Errorf("pods changed after an up with nothing to do: %v -> %v", e2ePodUIDs(pods), got)
	}
	e2eAssertHeldOutAnswers(ctx, t, baseURL, e2eOnePerClass(env.heldOut), e2eSecondModelProject)
}

// e2eProjectWithHack is project with the repository's hack/ linked in, for
// modelimage's stand-in bases.
func e2eProjectWithHack(t *testing.T, env *e2eRealNodeEnv, project string) string {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(project, "hack")); err != nil {
		if err := os.Symlink(filepath.Join(env.repoDir, "hack"), filepath.Join(project, "hack")); err != nil {
			t.Fatal(err)
		}
	}
	return project
}
