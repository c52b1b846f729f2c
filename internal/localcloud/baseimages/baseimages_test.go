package baseimages

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/internal/localcloud/dockerd"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// The runtime stand-in must be what distroless cc nonroot is: the C and C++
// runtimes, CA certificates, time zones, the nonroot user, and no shell or
// package manager to exploit. Read from the image itself, as docker exports
// its filesystem.
func TestRuntimeStandInIsDistrolessLike(t *testing.T) {
	docker := fixture.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	projectDir, _ := filepath.Abs("../../..")
	args, err := Ensure(ctx, projectDir, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	files := exportedFiles(t, ctx, docker, args["RUNTIME_IMAGE"])

	for _, forbidden := range []string{"bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash", "bin/busybox",
		"usr/bin/apt", "usr/bin/apt-get", "usr/bin/dpkg", "var/lib/dpkg/status"} {
		if _, ok := files[forbidden]; ok {
			t.Errorf("the runtime stand-in holds /%s", forbidden)
		}
	}
	var libs []string
	for name := range files {
		if strings.Contains(name, "libstdc++.so.6") || strings.Contains(name, "libc.so.6") || strings.Contains(name, "libgcc_s.so.1") {
			libs = append(libs, name)
		}
	}
	for _, want := range []string{"libstdc++.so.6", "libc.so.6", "libgcc_s.so.1"} {
		if !strings.Contains(strings.Join(libs, " "), want) {
			t.Errorf("the runtime stand-in has no %s", want)
		}
	}
	for _, want := range []string{"etc/ssl/certs/ca-certificates.crt", "usr/share/zoneinfo/UTC", "etc/passwd", "etc/group"} {
		if _, ok := files[want]; !ok {
			t.Errorf("the runtime stand-in has no /%s", want)
		}
	}
	if !strings.Contains(files["etc/passwd"], "nonroot:x:65532:65532:") || !strings.Contains(files["etc/group"], "nonroot:x:65532:") {
		t.Errorf("no nonroot 65532 in /etc/passwd %q and /etc/group %q", files["etc/passwd"], files["etc/group"])
	}
	user, err := docker.Output(ctx, "image", "inspect", "--format", "{{.Config.User}}", args["RUNTIME_IMAGE"])
	if err != nil || user != "65532:65532" {
		t.Errorf("the runtime stand-in runs as %q (%v), want 65532:65532", user, err)
	}
	t.Logf("runtime stand-in %s: %d files, no shell, no package manager", args["RUNTIME_IMAGE"], len(files))
}

// exportedFiles lists the image's filesystem (the contents of /etc/passwd
// and /etc/group too).
func exportedFiles(t *testing.T, ctx context.Context, docker dockerd.CLI, image string) map[string]string {
	t.Helper()
	// --entrypoint: the image has no command, and needs none to be created.
	id, err := docker.Output(ctx, "create", "--entrypoint", "/none", image)
	if err != nil {
		t.Fatal(err)
	}
	defer docker.Output(context.Background(), "rm", id)
	export := docker.Command(ctx, "export", id)
	stdout, err := export.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := export.Start(); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	archive := tar.NewReader(stdout)
	for {
		h, err := archive.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")
		files[name] = ""
		if name == "etc/passwd" || name == "etc/group" {
			content, _ := io.ReadAll(archive)
			files[name] = string(content)
		}
	}
	if err := export.Wait(); err != nil {
		t.Fatal(err)
	}
	return files
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if os.Getenv("MLOPS_VERBOSE") != "" {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
