package dvc

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/planets-mlops/deploy/internal/testenv/fakegcs"
)

func requireErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one saying %q", parts)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

const seed78MD5 = "0e58ef2c0057a92d656189cb73d8e649"

// DVC 3 writes `hash: md5` and keeps the object under files/md5/; DVC 2
// writes no hash and keeps it at the remote's root.
func TestDVCFilesOfBothVersionsGiveTheOutputAndItsObjectKey(t *testing.T) {
	for _, c := range []struct {
		file   string
		layout Layout
		key    string
	}{
		{"testdata/dvc3/planets.onnx.dvc", LayoutDVC3, "files/md5/0e/58ef2c0057a92d656189cb73d8e649"},
		{"testdata/dvc2/planets.onnx.dvc", LayoutDVC2, "0e/58ef2c0057a92d656189cb73d8e649"},
	} {
		out, err := ReadDVCFile(c.file)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if out.Path != "planets.onnx" || out.MD5 != seed78MD5 || out.Size != 824489 || out.Layout != c.layout || out.ObjectKey() != c.key {
			t.Errorf("%s: %+v, key %s; want planets.onnx %s 824489 %s %s", c.file, out, out.ObjectKey(), seed78MD5, c.layout, c.key)
		}
	}
}

func TestTheLockFileGivesTheStageOutputAtThePathAsked(t *testing.T) {
	out, err := ReadLock("../../testdata/dvc-guide/dvc.lock", "model/artifacts/planets.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if out.MD5 != seed78MD5 || out.Size != 824489 || out.Layout != LayoutDVC3 || !strings.Contains(out.RecordedIn, "stage train") {
		t.Errorf("got %+v", out)
	}
	out, err = ReadLock("testdata/dvc2/dvc.lock", "./model/artifacts/planets.onnx")
	if err != nil || out.Layout != LayoutDVC2 || out.ObjectKey() != "0e/58ef2c0057a92d656189cb73d8e649" {
		t.Errorf("DVC 2 lock: %+v, %v", out, err)
	}
	_, err = ReadLock("../../testdata/dvc-guide/dvc.lock", "model/planets.onnx")
	requireErr(t, err, "has no output model/planets.onnx", "model/artifacts/planets.onnx")
}

// The guide's MLEM model is a directory output: refused, saying what to do.
func TestDirectoryOutputsAreRefusedSayingWhatToDo(t *testing.T) {
	_, err := ReadDVCFile("testdata/dir/model.dvc")
	requireErr(t, err, "is a directory", "single-file output")
	_, err = ReadLock("testdata/dir/dvc.lock", "model/artifacts/planets.onnx")
	requireErr(t, err, "inside the directory output model", "single-file output")
}

func TestFilesThatDoNotParseAreRefusedNamingThem(t *testing.T) {
	_, err := ReadDVCFile("testdata/broken/planets.onnx.dvc")
	requireErr(t, err, "testdata/broken/planets.onnx.dvc does not parse as a .dvc file")
	_, err = ReadLock("testdata/legacylock/dvc.lock", "model/artifacts/planets.onnx")
	requireErr(t, err, "schema \"\"", "'2.0'")
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, ".dvc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, ".dvc", "config"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return repo
}

func TestRemotesAreReadFromTheConfigAsDVCWritesIt(t *testing.T) {
	r, err := ReadRemote("../../testdata/dvc-guide", "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "storage" || r.Bucket != "planets-mlops-dvc" || r.Prefix != "dvcstore" || !r.IsGCS() {
		t.Errorf("default remote: %+v", r)
	}
	out := Output{MD5: seed78MD5, Layout: LayoutDVC3}
	if got := r.ObjectURL(out); got != "gs://planets-mlops-dvc/dvcstore/files/md5/0e/58ef2c0057a92d656189cb73d8e649" {
		t.Errorf("object URL %s", got)
	}

	repo := writeConfig(t, "[core]\n    remote = gcs\n    autostage = true\n# a comment\n['remote \"gcs\"']\n    url = gs://b-1\n['remote \"local\"']\n    url = ../store\n")
	r, err = ReadRemote(repo, "local")
	if err != nil || r.IsGCS() || r.Dir != filepath.Join(repo, "store") {
		t.Errorf("local remote relative to .dvc/: %+v, %v", r, err)
	}
	r, err = ReadRemote(repo, "")
	if err != nil || r.Bucket != "b-1" || r.Prefix != "" {
		t.Errorf("bucket root remote: %+v, %v", r, err)
	}
	_, err = ReadRemote(repo, "other")
	requireErr(t, err, `no remote "other"`)
}

func TestBadRemotesAreRefused(t *testing.T) {
	for _, c := range []struct{ config, want string }{
		{"[core]\n    remote = s\n['remote \"s\"']\n    url = gs://Bad_Bucket/x\n", `"Bad_Bucket" is not a Cloud Storage bucket name`},
		{"[core]\n    remote = s\n['remote \"s\"']\n    url = s3://bucket/x\n", "expected gs://<bucket>/<path> or a local directory"},
		{"['remote \"s\"']\n    url = gs://bucket/x\n", "names no default remote"},
		{"[core\n", "does not parse"},
	} {
		_, err := ReadRemote(writeConfig(t, c.config), "")
		requireErr(t, err, c.want)
	}
	for name, valid := range map[string]bool{"planets-mlops-dvc": true, "a.b.c": true, "ab": false, "-ab": false, "goog-x": false, strings.Repeat("a", 64): false} {
		if ValidBucket(name) != valid {
			t.Errorf("ValidBucket(%q) = %v", name, !valid)
		}
	}
}

// A local-directory remote: the object is verified on the way; a missing
// or corrupted one is refused in one line naming the remote, path and hash.
func TestFetchFromALocalRemoteVerifiesTheObject(t *testing.T) {
	model := []byte("an onnx model's bytes")
	sum := md5.Sum(model)
	out := Output{Path: "planets.onnx", MD5: hex.EncodeToString(sum[:]), Size: int64(len(model)), Layout: LayoutDVC3, RecordedIn: "dvc.lock (stage train)"}
	dir := t.TempDir()
	f := NewFetcher(Remote{Name: "store", URL: dir, Dir: dir})
	object := filepath.Join(dir, "files", "md5", out.MD5[:2], out.MD5[2:])

	var buf bytes.Buffer
	requireErr(t, f.Fetch(context.Background(), out, &buf), `dvc remote "store"`, object, "does not exist", out.MD5)

	if err := os.MkdirAll(filepath.Dir(object), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(object, model, 0o644)
	buf.Reset()
	if err := f.Fetch(context.Background(), out, &buf); err != nil || !bytes.Equal(buf.Bytes(), model) {
		t.Fatalf("fetch: %v, %q", err, buf.Bytes())
	}

	corrupted := bytes.Clone(model)
	corrupted[0] ^= 1
	os.WriteFile(object, corrupted, 0o644)
	requireErr(t, f.Fetch(context.Background(), out, &bytes.Buffer{}), `dvc remote "store"`, object, "is not the recorded model", "records md5 "+out.MD5)
	os.WriteFile(object, append(model, '!'), 0o644)
	requireErr(t, f.Fetch(context.Background(), out, &bytes.Buffer{}), "more than 21 bytes")
}

// A gs:// remote through the Cloud Storage client, against a real Cloud
// Storage JSON API server on 127.0.0.1: DVC 3 and DVC 2 layouts under the
// remote's prefix; a missing and a corrupted object refused.
func TestFetchFromACloudStorageRemote(t *testing.T) {
	server := fakegcs.Start(t)
	model := []byte("the model's bytes, as dvc push uploaded them")
	sum := md5.Sum(model)
	hash := hex.EncodeToString(sum[:])
	remote := Remote{Name: "storage", URL: "gs://planets-dvc/store", Bucket: "planets-dvc", Prefix: "store"}
	dvc3 := Output{MD5: hash, Size: int64(len(model)), Layout: LayoutDVC3, RecordedIn: "dvc.lock (stage train)"}
	dvc2 := dvc3
	dvc2.Layout = LayoutDVC2
	server.Put("planets-dvc", "store/files/md5/"+hash[:2]+"/"+hash[2:], model)
	server.Put("planets-dvc", "store/"+hash[:2]+"/"+hash[2:], model)

	f := NewFetcher(remote)
	defer f.Close()
	for _, out := range []Output{dvc3, dvc2} {
		var buf bytes.Buffer
		if err := f.Fetch(context.Background(), out, &buf); err != nil || !bytes.Equal(buf.Bytes(), model) {
			t.Fatalf("%s: %v, %q", out.Layout, err, buf.Bytes())
		}
	}
	if server.Requests() == 0 {
		t.Fatal("the server answered no request")
	}

	other := dvc3
	other.MD5 = strings.Repeat("ab", 16)
	requireErr(t, f.Fetch(context.Background(), other, &bytes.Buffer{}), `dvc remote "storage"`, "gs://planets-dvc/store/files/md5/ab/"+strings.Repeat("ab", 15), "does not exist", other.MD5)

	corrupted := bytes.Clone(model)
	corrupted[3] ^= 1
	server.Put("planets-dvc", "store/files/md5/"+hash[:2]+"/"+hash[2:], corrupted)
	requireErr(t, f.Fetch(context.Background(), dvc3, &bytes.Buffer{}), `dvc remote "storage"`, "gs://planets-dvc/store/files/md5/"+hash[:2]+"/"+hash[2:], "is not the recorded model", "records md5 "+hash)
}
