package fingerprint

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func externalContext(t *testing.T, model []byte) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY . /\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "artifacts"), 0o755)
	if model != nil {
		os.WriteFile(filepath.Join(dir, "artifacts", "planets.onnx"), model, 0o644)
	}
	return dir
}

func externalOf(model []byte, fetches *int) External {
	sum := md5.Sum(model)
	return External{Path: "artifacts/planets.onnx", MD5: hex.EncodeToString(sum[:]), Size: int64(len(model)), Fetch: func(w io.Writer) error {
		*fetches++
		_, err := w.Write(model)
		return err
	}}
}

// A file DVC tracks enters the fingerprint by its content address: the
// same whether its bytes are in the checkout or not, different from the
// same bytes committed (a SHA-256 cannot be had from an MD5 without the
// bytes), and different for another model.
func TestAnExternalFileIsFingerprintedByItsContentAddress(t *testing.T) {
	model := []byte("model one")
	fetches := 0
	inputs := Inputs{Platform: "linux/amd64"}
	committed, err := Compute(context.Background(), externalContext(t, model), inputs)
	if err != nil {
		t.Fatal(err)
	}
	withBytes, err := Read(context.Background(), externalContext(t, model), inputs, externalOf(model, &fetches))
	if err != nil {
		t.Fatal(err)
	}
	withoutBytes, err := Read(context.Background(), externalContext(t, nil), inputs, externalOf(model, &fetches))
	if err != nil {
		t.Fatal(err)
	}
	other, err := Read(context.Background(), externalContext(t, nil), inputs, externalOf([]byte("model two"), &fetches))
	if err != nil {
		t.Fatal(err)
	}
	if withBytes.Fingerprint != withoutBytes.Fingerprint {
		t.Errorf("the checkout's copy changed the fingerprint: %s vs %s", withBytes.Fingerprint, withoutBytes.Fingerprint)
	}
	if withoutBytes.Fingerprint == committed {
		t.Error("a DVC output and a committed file share a fingerprint")
	}
	if other.Fingerprint == withoutBytes.Fingerprint {
		t.Error("another model kept the fingerprint")
	}
	if fetches != 0 {
		t.Errorf("reading fetched %d times, want 0", fetches)
	}
}

// Staging for a preview fetches nothing and records nothing; staging for a
// build fetches once, and not again while the staged copy is this
// fingerprint's; a copy in the checkout that verifies is used instead.
func TestAnExternalFileIsFetchedOnlyToStage(t *testing.T) {
	model := []byte("model one")
	fetches := 0
	c, err := Read(context.Background(), externalContext(t, nil), Inputs{Platform: "linux/amd64"}, externalOf(model, &fetches))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "ctx")
	complete, err := c.StageWithoutFetching(dst)
	if err != nil || complete || fetches != 0 {
		t.Fatalf("preview staging: complete %v, %v, %d fetches; want incomplete, no fetch", complete, err, fetches)
	}
	if _, err := os.Stat(dst + markerSuffix); err == nil {
		t.Error("an incomplete context was recorded as staged")
	}
	if err := c.Stage(dst); err != nil || fetches != 1 {
		t.Fatalf("stage: %v, %d fetches", err, fetches)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "artifacts", "planets.onnx")); string(got) != string(model) {
		t.Errorf("staged %q", got)
	}
	if err := c.Stage(dst); err != nil || fetches != 1 {
		t.Errorf("restage of the same fingerprint: %v, %d fetches, want still 1", err, fetches)
	}
	if complete, err := c.StageWithoutFetching(dst); !complete || err != nil {
		t.Errorf("preview after a build: complete %v, %v", complete, err)
	}

	local, err := Read(context.Background(), externalContext(t, model), Inputs{Platform: "linux/amd64"}, externalOf(model, &fetches))
	if err != nil {
		t.Fatal(err)
	}
	if complete, err := local.StageWithoutFetching(filepath.Join(t.TempDir(), "ctx")); !complete || err != nil || fetches != 1 {
		t.Errorf("with the checkout's verified copy: complete %v, %v, %d fetches", complete, err, fetches)
	}

	failing := externalOf(model, &fetches)
	failing.Fetch = func(io.Writer) error { return errors.New("dvc remote \"storage\": gone") }
	bad, err := Read(context.Background(), externalContext(t, nil), Inputs{Platform: "linux/amd64"}, failing)
	if err != nil {
		t.Fatal(err)
	}
	dst = filepath.Join(t.TempDir(), "ctx")
	if err := bad.Stage(dst); err == nil {
		t.Fatal("a failed fetch staged")
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("a half-staged context was left")
	}
}
