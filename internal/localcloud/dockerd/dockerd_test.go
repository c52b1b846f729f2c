package dockerd_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/internal/localcloud/dockerd"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// Without an engine, Find says so in one line, with the way to start one.
func TestFindWithoutAnEngineSaysHowToStartOne(t *testing.T) {
	fixture.Docker(t) // a docker CLI that builds with BuildKit is on PATH
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-engine.sock"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := dockerd.Find(ctx)
	if err == nil {
		t.Fatal("Find found an engine on a socket that does not exist")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "no Docker engine answers") || !strings.Contains(msg, "hack/dockerd.sh start") {
		t.Errorf("error = %q, want one line saying no engine answers and how to start one", msg)
	}
}

func TestFindWithoutADockerCLISaysWhatToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := dockerd.Find(context.Background())
	if err == nil || !strings.Contains(err.Error(), "apt-get install docker.io") {
		t.Errorf("error = %v, want one naming docker.io", err)
	}
}
