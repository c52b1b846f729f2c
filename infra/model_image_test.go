package infra

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/fingerprint"
	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

// testModel is a small build context, read and fingerprinted as the
// program reads the model.
func testModel(t *testing.T) *fingerprint.BuildContext {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"Dockerfile": "FROM scratch\nCOPY model.onnx /\n", "model.onnx": "weights"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	model, err := fingerprint.Read(context.Background(), dir, fingerprint.Inputs{Platform: "linux/amd64"})
	if err != nil {
		t.Fatal(err)
	}
	return model
}

// declareImage declares the image of model pushed with the docker CLI's
// credentials (as on GKE), or with a login when login is not nil; or,
// when prebuilt is not "", that image instead.
func declareImage(t *testing.T, model *fingerprint.BuildContext, prebuilt string, login ...string) (*mocktest.Mocks, string) {
	t.Helper()
	t.Chdir(t.TempDir()) // the staging dir is relative to the project
	var ref string
	mocks := declare(t, func(ctx *pulumi.Context) error {
		args := &ModelImageArgs{
			Model:          model,
			Prebuilt:       prebuilt,
			Name:           "planet-classifier",
			Repository:     pulumi.String("europe-west6-docker.pkg.dev/" + testProject + "/mlops"),
			RegistryServer: pulumi.String("europe-west6-docker.pkg.dev"),
			StagingDir:     ".build/model-context",
		}
		if len(login) == 2 {
			args.RegistryUsername, args.RegistryPassword = pulumi.String(login[0]), pulumi.String(login[1])
		}
		image, err := NewModelImage(ctx, "model-image", args)
		if err != nil {
			return err
		}
		ref = resolve[string](t, image.Ref)
		return nil
	})
	return mocks, ref
}

func TestModelImageIsTaggedWithTheFingerprintAndBuiltFromTheStagedContext(t *testing.T) {
	model := testModel(t)
	mocks, ref := declareImage(t, model, "")
	requireParented(t, mocks, "mlops:infra:ModelImage")
	image := mocks.One(t, "docker:index/image:Image")
	repo := "europe-west6-docker.pkg.dev/" + testProject + "/mlops/planet-classifier"
	for path, want := range map[string]string{
		"imageName":        repo + ":" + model.Fingerprint,
		"build.context":    ".build/model-context",
		"build.dockerfile": ".build/model-context/Dockerfile",
		"build.platform":   "linux/amd64",
		"registry.server":  "europe-west6-docker.pkg.dev",
	} {
		if got := image.Str(path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if !strings.HasPrefix(ref, repo+"@sha256:") {
		t.Errorf("Ref %q is not the pushed image by digest", ref)
	}
	staged, err := os.ReadFile(filepath.Join(".build", "model-context", "model.onnx"))
	if err != nil || string(staged) != "weights" {
		t.Errorf("the model was not staged: %q, %v", staged, err)
	}
}

func TestModelImageGivenByDigestBuildsNothing(t *testing.T) {
	prebuilt := "registry.example.com/planets@sha256:" + strings.Repeat("ab", 32)
	mocks, ref := declareImage(t, testModel(t), prebuilt)
	if n := len(mocks.OfType("docker:index/image:Image")); n != 0 {
		t.Errorf("%d images built although one was given", n)
	}
	if ref != prebuilt {
		t.Errorf("Ref = %q, want %q", ref, prebuilt)
	}
	if _, err := os.Stat(".build"); !os.IsNotExist(err) {
		t.Errorf("a build context was staged for a prebuilt image")
	}
}

// TestModelImageWithoutALoginStoresNoCredential: pulumi-docker keeps an
// Image's inputs in the state, so without a password the registry input is
// the server alone, and the push authenticates through the docker CLI's
// credential helper (provider/image.go getRegistryAuth: no username and
// password, the CLI config's credentials for the server).
func TestModelImageWithoutALoginStoresNoCredential(t *testing.T) {
	mocks, _ := declareImage(t, testModel(t), "")
	registry := mocks.One(t, "docker:index/image:Image").Input("registry")
	if !registry.IsObject() {
		t.Fatalf("registry input %v, want the server", registry)
	}
	var keys []string
	for k := range registry.ObjectValue() {
		keys = append(keys, string(k))
	}
	if len(keys) != 1 || keys[0] != "server" {
		t.Errorf("registry inputs %v, want only server: a username or password would be stored in the state", keys)
	}
}

// TestModelImageWithALoginKeepsThePasswordSecret: the kubernetes target's
// registryPassword, if given, is passed on as a secret (encrypted in the
// state, as the README says).
func TestModelImageWithALoginKeepsThePasswordSecret(t *testing.T) {
	mocks, _ := declareImage(t, testModel(t), "", "robot", "registry-password")
	image := mocks.One(t, "docker:index/image:Image")
	if image.Str("registry.username") != "robot" || image.Str("registry.password") != "registry-password" {
		t.Errorf("registry login %q / %q", image.Str("registry.username"), image.Str("registry.password"))
	}
	if !image.Input("registry").IsSecret() && !image.Inputs["registry"].ObjectValue()["password"].IsSecret() {
		t.Errorf("the registry password is not a secret")
	}
}
