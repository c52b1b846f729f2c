// Package dockerd finds the Docker engine the local cloud builds and runs
// images with, and a docker command line that builds with BuildKit.
//
// The engine is Debian's docker.io dockerd, started by hack/dockerd.sh
// (.ci/run does it) or by the machine's own service manager; this package
// only talks to it, through the CLI.
package dockerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CLI is a docker command line whose engine answers.
type CLI struct {
	// Path is the docker binary.
	Path string
	// ServerVersion is the engine's version.
	ServerVersion string
}

// Find returns the first docker on PATH that builds with BuildKit (with the
// buildx plugin, or a client older than 23, which has BuildKit built in:
// Debian bookworm's 20.10) and whose engine answers. The error says what is
// missing and how to get it.
func Find(ctx context.Context) (CLI, error) {
	var tried []string
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		path := filepath.Join(dir, "docker")
		if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			continue
		}
		if !buildsWithBuildKit(ctx, path) {
			tried = append(tried, path+" (no BuildKit: no buildx plugin)")
			continue
		}
		cli := CLI{Path: path}
		version, err := cli.Output(ctx, "version", "--format", "{{.Server.Version}}")
		if err != nil {
			return CLI{}, fmt.Errorf("no Docker engine answers (%s): start one with hack/dockerd.sh start (or your Docker service), then run again", firstLine(err.Error()))
		}
		cli.ServerVersion = version
		return cli, nil
	}
	if len(tried) > 0 {
		return CLI{}, fmt.Errorf("no docker CLI on PATH builds with BuildKit (tried %s): install Debian's docker.io or the buildx plugin", strings.Join(tried, ", "))
	}
	return CLI{}, errors.New("no docker CLI on PATH: apt-get install docker.io, then hack/dockerd.sh start")
}

func buildsWithBuildKit(ctx context.Context, path string) bool {
	if exec.CommandContext(ctx, path, "buildx", "version").Run() == nil {
		return true
	}
	out, err := exec.CommandContext(ctx, path, "version", "--format", "{{.Client.Version}}").Output()
	if err != nil {
		// The client prints its own version even when no engine answers;
		// nothing at all means it is not a docker CLI we know.
		out = bytes.TrimSpace(out)
		if len(out) == 0 {
			return false
		}
	}
	major, _, _ := strings.Cut(strings.TrimSpace(string(out)), ".")
	n, err := strconv.Atoi(major)
	return err == nil && n < 23
}

// Command is the docker command with args, BuildKit on.
func (c CLI) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Path, args...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Output runs docker with args and returns its trimmed stdout; the error
// holds what it printed on stderr.
func (c CLI) Output(ctx context.Context, args ...string) (string, error) {
	cmd := c.Command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
