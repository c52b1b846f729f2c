package program

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/fingerprint"
	"github.com/planets-mlops/deploy/internal/testenv/fakegcs"
	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

// The guide-shaped fixture (testdata/dvc-guide): dvc.yaml, dvc.lock and
// .dvc/config with a gs:// remote, as DVC 3 writes them, and the report of
// the model dvc.lock records (the seed-78 model), naming it by its MD5 too.
// The ONNX file is only in the remote.
const (
	dvcBucket = "planets-mlops-dvc"
	dvcObject = "dvcstore/files/md5/0e/58ef2c0057a92d656189cb73d8e649"
)

// newDVCWorkspace is a project laid out as a team coming from the guide
// has it: the fixture's DVC files at its root, this repository's model/
// without its ONNX file, and the stack taking the model from dvc.lock.
func newDVCWorkspace(t *testing.T, overrides map[string]string) *projectCopy {
	t.Helper()
	w := newWorkspace(t, overrides)
	w.config["mlops:modelDvcFile"] = filepath.Join(w.root, "dvc.lock")
	// The fixture's files over the copy of the repository's model/.
	fixture := os.DirFS(filepath.Join(repoRoot, "testdata", "dvc-guide"))
	err := fs.WalkDir(fixture, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := fs.ReadFile(fixture, path)
		if err != nil {
			return err
		}
		target := filepath.Join(w.root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, raw, 0o644)
	})
	if err != nil {
		t.Fatalf("copying the DVC fixture: %v", err)
	}
	if err := os.Remove(filepath.Join(w.modelDir, "artifacts", "planets.onnx")); err != nil {
		t.Fatal(err)
	}
	return w
}

func seed78Model(t *testing.T) []byte {
	t.Helper()
	model, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "seed78", "model", "artifacts", "planets.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	return model
}

// runDVC runs the program once, as a preview or an up, and returns what it
// declared, or the error.
func (w *projectCopy) runDVC(t *testing.T, preview bool) (*mocktest.Mocks, error) {
	t.Helper()
	t.Chdir(w.root)
	mocks := &mocktest.Mocks{Preview: preview}
	err := mocks.Run(func(ctx *pulumi.Context) error {
		_, err := declare(ctx, "")
		return err
	}, w.config)
	return mocks, err
}

func stagedModel(w *projectCopy) ([]byte, error) {
	return os.ReadFile(filepath.Join(w.root, filepath.FromSlash(fingerprint.StagingDir), "artifacts", "planets.onnx"))
}

// A pull request's preview of a model DVC tracks needs no bucket and no
// network: nothing listens where the Cloud Storage client would go, and
// the preview still fingerprints the model (by DVC's MD5), holds it to the
// gate (the report names that MD5) and declares the image.
func TestAPreviewOfADVCModelFetchesNothing(t *testing.T) {
	fakegcs.NoServer(t)
	w := newDVCWorkspace(t, nil)
	mocks, err := w.runDVC(t, true)
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	image := mocks.One(t, "docker:index/image:Image")
	if name := image.Str("imageName"); !strings.Contains(name, ":") {
		t.Errorf("imageName %q", name)
	}
	if _, err := stagedModel(w); err == nil {
		t.Error("the preview staged the model file: it was fetched")
	}
}

// An up of a new model fetches it once from the bucket, verified, stages
// it and builds; a second up of the same model sends no request at all.
// The fingerprint is DVC's: the same whether the bucket was reached or not.
func TestAnUpFetchesTheDVCModelOnceAndANoOpUpSendsNoRequest(t *testing.T) {
	server := fakegcs.Start(t)
	model := seed78Model(t)
	server.Put(dvcBucket, dvcObject, model)
	w := newDVCWorkspace(t, nil)

	if _, err := w.runDVC(t, true); err != nil {
		t.Fatalf("preview: %v", err)
	}
	if n := server.Requests(); n != 0 {
		t.Fatalf("the preview sent %d requests to Cloud Storage, want 0", n)
	}

	mocks, err := w.runDVC(t, false)
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	fetched := server.Requests()
	if fetched == 0 {
		t.Fatal("the up sent no request: the model was not fetched")
	}
	staged, err := stagedModel(w)
	if err != nil || !bytes.Equal(staged, model) {
		t.Fatalf("staged model: %d bytes, %v; want the remote's %d bytes", len(staged), err, len(model))
	}
	image := mocks.One(t, "docker:index/image:Image")
	tag := image.Str("imageName")

	// The deploy identity may read that bucket; the preview identity gets
	// nothing there.
	var grants []string
	for _, g := range mocks.OfType("gcp:storage/bucketIAMMember:BucketIAMMember") {
		if g.Str("bucket") == dvcBucket {
			grants = append(grants, g.Str("role")+" "+g.Str("member"))
		}
	}
	if want := "roles/storage.objectViewer serviceAccount:mlops-ci@" + testProject + ".iam.gserviceaccount.com"; len(grants) != 1 || grants[0] != want {
		t.Errorf("grants on the DVC bucket: %q; want only %q", grants, want)
	}

	mocks, err = w.runDVC(t, false)
	if err != nil {
		t.Fatalf("second up: %v", err)
	}
	if n := server.Requests() - fetched; n != 0 {
		t.Errorf("the no-op up sent %d requests to Cloud Storage, want 0", n)
	}
	if again := mocks.One(t, "docker:index/image:Image").Str("imageName"); again != tag {
		t.Errorf("second up tags %s, first %s", again, tag)
	}
}

// The settings and the files they name are checked before anything is
// declared: a local remote on the GKE target (the deploy identity could
// not read it), a dvc.lock that does not parse, a remote the config lacks.
func TestBadDVCSettingsAreRefusedAsConfiguration(t *testing.T) {
	fakegcs.NoServer(t)
	t.Run("local remote on gke", func(t *testing.T) {
		w := newDVCWorkspace(t, nil)
		os.WriteFile(filepath.Join(w.root, ".dvc", "config"), []byte("[core]\n    remote = local\n['remote \"local\"']\n    url = /srv/dvc\n"), 0o644)
		requireAll(t, w.runRefused(t), "invalid configuration, nothing was changed", "mlops:modelDvcRemote", `remote "local" is /srv/dvc`, "expected a gs:// remote with target gke")
	})
	t.Run("lock that does not parse", func(t *testing.T) {
		w := newDVCWorkspace(t, nil)
		os.WriteFile(filepath.Join(w.root, "dvc.lock"), []byte("schema: '2.0'\nstages: [train\n"), 0o644)
		requireAll(t, w.runRefused(t), "invalid configuration, nothing was changed", "mlops:modelDvcFile", "does not parse as dvc.lock")
	})
	t.Run("remote not in the config", func(t *testing.T) {
		w := newDVCWorkspace(t, map[string]string{"mlops:modelDvcRemote": "backup"})
		requireAll(t, w.runRefused(t), "mlops:modelDvcRemote", `has no remote "backup"`)
	})
	t.Run("report of another model", func(t *testing.T) {
		w := newDVCWorkspace(t, nil)
		committed, err := os.ReadFile(filepath.Join(repoRoot, "model", "artifacts", "report.json"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(w.modelDir, "artifacts", "report.json"), committed, 0o644)
		requireAll(t, w.runRefused(t), "model gate", "names its model by sha256 only", "0e58ef2c0057a92d656189cb73d8e649")
	})
}

// A corrupted object and a missing one are refused in one line naming the
// remote, the object and the hash, before any image is declared, pushed or
// rolled out; nothing half-staged is left for a build.
func TestACorruptedOrMissingDVCObjectIsRefusedBeforeAnyBuild(t *testing.T) {
	for _, c := range []struct {
		name string
		put  func(*fakegcs.Server)
		want string
	}{
		{"missing", func(*fakegcs.Server) {}, "does not exist"},
		{"corrupted", func(s *fakegcs.Server) {
			model := bytes.Clone(seed78Model(t))
			model[len(model)/2] ^= 0xff
			s.Put(dvcBucket, dvcObject, model)
		}, "is not the recorded model"},
	} {
		t.Run(c.name, func(t *testing.T) {
			server := fakegcs.Start(t)
			c.put(server)
			w := newDVCWorkspace(t, nil)
			mocks, err := w.runDVC(t, false)
			if err == nil {
				t.Fatal("the up accepted the object")
			}
			requireAll(t, err.Error(), `dvc remote "storage"`, "gs://"+dvcBucket+"/"+dvcObject, "0e58ef2c0057a92d656189cb73d8e649", c.want)
			for _, typ := range []string{"docker:index/image:Image", "kubernetes:apps/v1:Deployment"} {
				if n := len(mocks.OfType(typ)); n != 0 {
					t.Errorf("%d %s declared after the refusal", n, typ)
				}
			}
			if _, err := os.Stat(filepath.Join(w.root, filepath.FromSlash(fingerprint.StagingDir))); err == nil {
				t.Error("a build context was left staged")
			}
		})
	}
}

// On an existing cluster a local-directory remote serves too (a workstation,
// the local cluster): `url = ../dvc-store` is relative to .dvc/, and the
// DVC 2 layout (no `hash` in dvc.lock) puts the object at the remote's root.
// No bucket, so no bucket grant.
func TestALocalDVCRemoteServesAnExistingCluster(t *testing.T) {
	fakegcs.NoServer(t)
	w := newDVCWorkspace(t, map[string]string{
		"mlops:target":      "kubernetes",
		"mlops:registry":    "localhost:5001/planets",
		"mlops:kubeconfig":  "apiVersion: v1\nkind: Config\n",
		"mlops:kubeContext": "kind-mlops",
		"mlops:serviceType": "ClusterIP",
	})
	os.WriteFile(filepath.Join(w.root, ".dvc", "config"), []byte("[core]\n    remote = local\n['remote \"local\"']\n    url = ../dvc-store\n"), 0o644)
	lock, err := os.ReadFile(filepath.Join(w.root, "dvc.lock"))
	if err != nil {
		t.Fatal(err)
	}
	// The same lock as DVC 2 wrote it: no `hash: md5` lines.
	os.WriteFile(filepath.Join(w.root, "dvc.lock"), bytes.ReplaceAll(lock, []byte("      hash: md5\n"), nil), 0o644)
	object := filepath.Join(w.root, "dvc-store", "0e", "58ef2c0057a92d656189cb73d8e649")
	os.MkdirAll(filepath.Dir(object), 0o755)
	model := seed78Model(t)
	os.WriteFile(object, model, 0o644)

	mocks, err := w.runDVC(t, false)
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	if staged, err := stagedModel(w); err != nil || !bytes.Equal(staged, model) {
		t.Errorf("staged model: %d bytes, %v", len(staged), err)
	}
	if n := len(mocks.OfType("gcp:storage/bucketIAMMember:BucketIAMMember")); n != 0 {
		t.Errorf("%d bucket grants on an existing cluster, want none", n)
	}
}

// CI runs every job in a fresh checkout: no staged context, no model file.
// The workflows keep DVC's cache (.dvc/cache) in the CI cache, keyed by
// dvc.lock, and restore it before the preview and the up; the program
// stages the model from it once it verifies. So a pull request's preview
// in a fresh checkout stages exactly the context the deploy built (the
// docker provider, which hashes the context, plans no change) without a
// request, and the deploy's no-op up fetches nothing either. A restored
// cache entry that is not the recorded model is not used: the up fetches.
func TestAFreshCheckoutWithDVCsCacheRestoredStagesTheBuiltContextWithoutRequests(t *testing.T) {
	server := fakegcs.Start(t)
	model := seed78Model(t)
	server.Put(dvcBucket, dvcObject, model)
	cacheEntry := filepath.Join(".dvc", "cache", filepath.FromSlash(dvcObject[len("dvcstore/"):]))

	// The deploy on the default branch: fetches, builds, keeps the model
	// in DVC's cache, which the workflow then saves.
	deployed := newDVCWorkspace(t, nil)
	mocks, err := deployed.runDVC(t, false)
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	tag := mocks.One(t, "docker:index/image:Image").Str("imageName")
	built := treeDigest(t, filepath.Join(deployed.root, filepath.FromSlash(fingerprint.StagingDir)))
	cached, err := os.ReadFile(filepath.Join(deployed.root, cacheEntry))
	if err != nil || !bytes.Equal(cached, model) {
		t.Fatalf("DVC's cache after the fetch: %d bytes, %v; want the model's %d bytes", len(cached), err, len(model))
	}
	requests := server.Requests()

	// A pull request's job: a fresh checkout, the cache restored.
	fresh := newDVCWorkspace(t, nil)
	restore := func(content []byte) {
		t.Helper()
		path := filepath.Join(fresh.root, cacheEntry)
		os.MkdirAll(filepath.Dir(path), 0o755)
		os.Remove(path)
		if err := os.WriteFile(path, content, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	restore(cached)
	mocks, err = fresh.runDVC(t, true)
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	if n := server.Requests() - requests; n != 0 {
		t.Errorf("the preview in a fresh checkout sent %d requests to Cloud Storage, want 0", n)
	}
	if got := mocks.One(t, "docker:index/image:Image").Str("imageName"); got != tag {
		t.Errorf("the preview tags %s, the deploy built %s", got, tag)
	}
	if got := treeDigest(t, filepath.Join(fresh.root, filepath.FromSlash(fingerprint.StagingDir))); got != built {
		t.Errorf("the preview staged another build context (%s) than the deploy built (%s): the image would show as changing", got, built)
	}

	// The deploy job's no-op up in a fresh checkout fetches nothing.
	if _, err := fresh.runDVC(t, false); err != nil {
		t.Fatalf("up: %v", err)
	}
	if n := server.Requests() - requests; n != 0 {
		t.Errorf("the no-op up in a fresh checkout sent %d requests to Cloud Storage, want 0", n)
	}

	// A cache entry that is not the recorded model is not staged.
	fresh = newDVCWorkspace(t, nil)
	corrupted := bytes.Clone(model)
	corrupted[len(corrupted)/2] ^= 0xff
	restore(corrupted)
	if _, err := fresh.runDVC(t, false); err != nil {
		t.Fatalf("up over a corrupted cache: %v", err)
	}
	if server.Requests() == requests {
		t.Error("the up staged a cache entry of other bytes without fetching")
	}
	if staged, err := stagedModel(fresh); err != nil || !bytes.Equal(staged, model) {
		t.Errorf("staged over a corrupted cache: %d bytes, %v; want the remote's model", len(staged), err)
	}
}

// treeDigest is a digest of every path, mode and content under dir.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(h, "%s\x00%v\x00", rel, info.Mode())
		if info.Mode().IsRegular() {
			raw, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(raw)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the staged context: %v", err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
