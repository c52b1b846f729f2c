package fingerprint

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerContextView lists a build context the way pulumi-docker v4.10.0's
// Image hashes it in Check (provider.go, hashContext/hashPath): every file's
// relative path, its fs.FileMode string (type and permission bits) and the
// SHA-256 of its content; mtimes and owners are not part of it. Two contexts
// with the same view get the same contextDigest, so no rebuild.
func dockerContextView(t *testing.T, dir string) []string {
	t.Helper()
	var view []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		view = append(view, fmt.Sprintf("%s %s %x", filepath.ToSlash(rel), info.Mode(), sha256.Sum256(content)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(view)
	return view
}

func stage(t *testing.T, src, dst string) string {
	t.Helper()
	model, err := Read(context.Background(), src, linuxAMD64)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if err := model.Stage(dst); err != nil {
		t.Fatalf("Stage: %v", err)
	}
	return model.Fingerprint
}

func TestStagedContextHoldsExactlyTheFingerprintedFiles(t *testing.T) {
	src := writeTree(t, modelTree)
	if err := os.Chmod(filepath.Join(src, "cmd", "main.go"), 0o700); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "context")
	fp := stage(t, src, dst)
	if want := mustCompute(t, src, linuxAMD64); fp != want {
		t.Fatalf("Stage fingerprint %s, Compute %s", fp, want)
	}
	got := dockerContextView(t, dst)
	var want []string
	for _, name := range []string{".dockerignore", "Dockerfile", "cmd/main.go", "labels.json", "model.onnx"} {
		mode := "-rw-r--r--"
		if name == "cmd/main.go" {
			mode = "-rwxr-xr-x"
		}
		want = append(want, fmt.Sprintf("%s %s %x", name, mode, sha256.Sum256([]byte(modelTree[name]))))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("staged context:\n  got  %q\n  want %q", got, want)
	}
}

// The property the whole deployment rests on: what pulumi-docker hashes
// changes when, and only when, the fingerprint does.
func TestDockerSeesAChangeExactlyWhenTheFingerprintChanges(t *testing.T) {
	src := writeTree(t, modelTree)
	dst := filepath.Join(t.TempDir(), "context")
	fp := stage(t, src, dst)
	view := dockerContextView(t, dst)

	// Another machine: other umask, other mtimes, a new checkout of the files.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for name := range modelTree {
		path := filepath.Join(src, name)
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
		when := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
		if err := os.Chtimes(path, when, when); err != nil {
			t.Fatal(err)
		}
	}
	otherDst := filepath.Join(t.TempDir(), "context")
	if got := stage(t, src, otherDst); got != fp {
		t.Fatalf("modes and mtimes changed the fingerprint")
	}
	if got := dockerContextView(t, otherDst); !slices.Equal(got, view) {
		t.Fatalf("modes and mtimes changed what docker hashes:\n  %q\n  %q", view, got)
	}

	writeFile(t, filepath.Join(src, "model.onnx"), "new weights")
	if got := stage(t, src, dst); got == fp {
		t.Fatalf("a new model kept the fingerprint")
	}
	if got := dockerContextView(t, dst); slices.Equal(got, view) {
		t.Fatalf("a new model did not change what docker hashes")
	}
}

func TestStageLeavesAnUpToDateContextAlone(t *testing.T) {
	src := writeTree(t, modelTree)
	dst := filepath.Join(t.TempDir(), "context")
	stage(t, src, dst)
	sentinel := filepath.Join(dst, "model.onnx")
	before, err := os.Stat(sentinel)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // so a rewrite would show in the mtime
	stage(t, src, dst)
	after, err := os.Stat(sentinel)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("an unchanged model was staged again")
	}
}

func TestStageRemovesFilesThatLeftTheContext(t *testing.T) {
	src := writeTree(t, modelTree)
	dst := filepath.Join(t.TempDir(), "context")
	stage(t, src, dst)
	if err := os.Remove(filepath.Join(src, "labels.json")); err != nil {
		t.Fatal(err)
	}
	stage(t, src, dst)
	if _, err := os.Stat(filepath.Join(dst, "labels.json")); !os.IsNotExist(err) {
		t.Fatalf("a file removed from the model is still staged (err %v)", err)
	}
}

func TestStageRefusesAModelThatChangedSinceItWasRead(t *testing.T) {
	src := writeTree(t, modelTree)
	dst := filepath.Join(t.TempDir(), "context")
	model, err := Read(context.Background(), src, linuxAMD64)
	if err != nil {
		t.Fatal(err)
	}
	// The model changes after it was read and fingerprinted: staging it
	// would put new weights under the old fingerprint's tag.
	writeFile(t, filepath.Join(src, "model.onnx"), "new weights")
	err = model.Stage(dst)
	if err == nil || !strings.Contains(err.Error(), `"model.onnx" changed after the model was fingerprinted`) {
		t.Fatalf("Stage of a model changed since Read = %v, want an error naming model.onnx", err)
	}
	if _, err := os.Stat(dst + markerSuffix); !os.IsNotExist(err) {
		t.Errorf("a refused staging left its fingerprint marker (err %v)", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("a refused staging left a half-staged context (err %v)", err)
	}
}

func TestStageOfAContextAlreadyStagedReadsNothing(t *testing.T) {
	src := writeTree(t, modelTree)
	dst := filepath.Join(t.TempDir(), "context")
	model, err := Read(context.Background(), src, linuxAMD64)
	if err != nil {
		t.Fatal(err)
	}
	if err := model.Stage(dst); err != nil {
		t.Fatal(err)
	}
	// Staged already: the model directory is not read again (here it is
	// gone), the staged context is kept as it is.
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	if err := model.Stage(dst); err != nil {
		t.Fatalf("Stage of a context already staged: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "model.onnx")); err != nil {
		t.Fatalf("the staged context lost a file: %v", err)
	}
}
