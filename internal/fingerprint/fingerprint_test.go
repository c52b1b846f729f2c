package fingerprint

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var linuxAMD64 = Inputs{Platform: "linux/amd64"}

// writeTree creates files (path -> content) under a new temporary directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustCompute(t *testing.T, dir string, inputs Inputs) string {
	t.Helper()
	fp, err := Compute(context.Background(), dir, inputs)
	if err != nil {
		t.Fatalf("Compute(%s): %v", dir, err)
	}
	return fp
}

var modelTree = map[string]string{
	"Dockerfile":      "FROM scratch\nCOPY . /\n",
	".dockerignore":   "*.md\ntraining/\n",
	"model.onnx":      "weights",
	"labels.json":     `["Earth","Mars"]`,
	"cmd/main.go":     "package main",
	"README.md":       "docs are not in the image",
	"training/run.py": "print('not in the image')",
}

func TestSameTreeSameFingerprint(t *testing.T) {
	first := mustCompute(t, writeTree(t, modelTree), linuxAMD64)
	second := mustCompute(t, writeTree(t, modelTree), linuxAMD64)
	if first != second {
		t.Fatalf("two checkouts of the same tree in different paths: %s != %s", first, second)
	}
	if len(first) != 64 || strings.Trim(first, "0123456789abcdef") != "" {
		t.Fatalf("fingerprint %q is not a hex SHA-256", first)
	}
}

func TestWhatChangesTheFingerprint(t *testing.T) {
	base := mustCompute(t, writeTree(t, modelTree), linuxAMD64)
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		inputs Inputs
	}{
		{"one byte of the model", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "model.onnx"), "weightS")
		}, linuxAMD64},
		{"a new file in the context", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "extra.bin"), "")
		}, linuxAMD64},
		{"a file removed", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "labels.json")); err != nil {
				t.Fatal(err)
			}
		}, linuxAMD64},
		{"a file renamed", func(t *testing.T, dir string) {
			if err := os.Rename(filepath.Join(dir, "labels.json"), filepath.Join(dir, "classes.json")); err != nil {
				t.Fatal(err)
			}
		}, linuxAMD64},
		{"the executable bit", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "model.onnx"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, linuxAMD64},
		{"the .dockerignore itself", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, ".dockerignore"), "*.md\n")
		}, linuxAMD64},
		{"the platform", nil, Inputs{Platform: "linux/arm64"}},
		{"a build argument", nil, Inputs{Platform: "linux/amd64", BuildArgs: map[string]string{"ONNXRUNTIME_VERSION": "1.22.0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, modelTree)
			if tt.mutate != nil {
				tt.mutate(t, dir)
			}
			if got := mustCompute(t, dir, tt.inputs); got == base {
				t.Fatalf("%s did not change the fingerprint %s", tt.name, base)
			}
		})
	}
}

func TestWhatDoesNotChangeTheFingerprint(t *testing.T) {
	base := mustCompute(t, writeTree(t, modelTree), linuxAMD64)
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
	}{
		{"mtimes", func(t *testing.T, dir string) {
			old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
			for name := range modelTree {
				if err := os.Chtimes(filepath.Join(dir, name), old, old); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"read/write bits of another umask", func(t *testing.T, dir string) {
			for name := range modelTree {
				if err := os.Chmod(filepath.Join(dir, name), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"a file that .dockerignore excludes", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "README.md"), "rewritten docs")
			writeFile(t, filepath.Join(dir, "training", "notes.txt"), "new notes")
		}},
		{"an empty directory", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, modelTree)
			tt.mutate(t, dir)
			if got := mustCompute(t, dir, linuxAMD64); got != base {
				t.Fatalf("%s changed the fingerprint: %s -> %s", tt.name, base, got)
			}
		})
	}
}

func TestDockerignoreExceptionsAreHonoured(t *testing.T) {
	files := map[string]string{
		"Dockerfile":    "FROM scratch",
		".dockerignore": "data/\n!data/keep.bin\n",
		"data/keep.bin": "kept",
		"data/drop.bin": "dropped",
	}
	dir := writeTree(t, files)
	base := mustCompute(t, dir, linuxAMD64)

	writeFile(t, filepath.Join(dir, "data", "drop.bin"), "dropped, changed")
	if got := mustCompute(t, dir, linuxAMD64); got != base {
		t.Fatalf("an excluded file changed the fingerprint")
	}
	writeFile(t, filepath.Join(dir, "data", "keep.bin"), "kept, changed")
	if got := mustCompute(t, dir, linuxAMD64); got == base {
		t.Fatalf("a file brought back by a ! exception did not change the fingerprint")
	}
}

func TestSymlinkTargetIsPartOfTheFingerprint(t *testing.T) {
	dir := writeTree(t, modelTree)
	if err := os.Symlink("model.onnx", filepath.Join(dir, "current.onnx")); err != nil {
		t.Fatal(err)
	}
	base := mustCompute(t, dir, linuxAMD64)
	os.Remove(filepath.Join(dir, "current.onnx"))
	if err := os.Symlink("labels.json", filepath.Join(dir, "current.onnx")); err != nil {
		t.Fatal(err)
	}
	if got := mustCompute(t, dir, linuxAMD64); got == base {
		t.Fatalf("retargeting a symlink did not change the fingerprint")
	}
}

func TestErrorsNameTheProblem(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	file := filepath.Join(t.TempDir(), "model.onnx")
	writeFile(t, file, "x")
	onlyIgnored := writeTree(t, map[string]string{".dockerignore": "*\n", "a.txt": "a"})
	unreadable := writeTree(t, modelTree)
	if err := os.Chmod(filepath.Join(unreadable, "model.onnx"), 0o000); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, dir, want string
	}{
		{"missing directory", missing, "does not exist"},
		{"a file, not a directory", file, "is not a directory"},
		{"empty directory", t.TempDir(), "has no files"},
		{"everything ignored", onlyIgnored, "has no files"},
	}
	withFIFO := writeTree(t, modelTree)
	if err := syscall.Mkfifo(filepath.Join(withFIFO, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests = append(tests, struct{ name, dir, want string }{"a named pipe", withFIFO, `"pipe" is a`})
	if os.Geteuid() != 0 { // root reads files whatever their mode
		tests = append(tests, struct{ name, dir, want string }{"unreadable file", unreadable, `cannot read "model.onnx"`})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compute(context.Background(), tt.dir, linuxAMD64)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compute(%s) error = %v, want one containing %q", tt.dir, err, tt.want)
			}
		})
	}
}

func TestCancelledContextStopsHashing(t *testing.T) {
	dir := writeTree(t, modelTree)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Compute(ctx, dir, linuxAMD64); err == nil {
		t.Fatal("Compute with a cancelled context succeeded")
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkComputeLargeModel fingerprints a generated ~1 GiB model directory
// and, in the same run, times sha256sum over the same bytes for comparison.
//
//	go test ./internal/fingerprint -run '^$' -bench LargeModel -benchtime 3x
func BenchmarkComputeLargeModel(b *testing.B) {
	const (
		files    = 16
		fileSize = 64 << 20 // 16 x 64 MiB = 1 GiB
	)
	dir := b.TempDir()
	chunk := make([]byte, 1<<20)
	var paths []string
	for i := range files {
		path := filepath.Join(dir, "weights", "shard-"+string(rune('a'+i))+".bin")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		for j := range fileSize / len(chunk) {
			for k := range chunk {
				chunk[k] = byte(i*31 + j*7 + k)
			}
			if _, err := f.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, path)
	}
	writeFileB(b, filepath.Join(dir, "Dockerfile"), "FROM scratch\n")

	b.Run("fingerprint", func(b *testing.B) {
		b.SetBytes(files * fileSize)
		for b.Loop() {
			if _, err := Compute(context.Background(), dir, linuxAMD64); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sha256sum", func(b *testing.B) {
		if _, err := exec.LookPath("sha256sum"); err != nil {
			b.Skip("sha256sum not on PATH")
		}
		b.SetBytes(files * fileSize)
		for b.Loop() {
			if out, err := exec.Command("sha256sum", paths...).CombinedOutput(); err != nil {
				b.Fatalf("sha256sum: %v: %s", err, out)
			}
		}
	})
}

func writeFileB(b *testing.B, path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		b.Fatal(err)
	}
}
