// Package modelimage builds the model image from model/Dockerfile with
// docker build (BuildKit) on the stand-in bases, pushes it to a registry,
// and runs it under Docker the way the Deployment runs it.
//
// pulumi-docker's provider plugin cannot be had here, so the program's
// docker.Image is proven under mocks only; this package builds what it would
// build: the same staged, normalized context (fingerprint.Stage at
// fingerprint.StagingDir) and the same Dockerfile, for the same platform.
package modelimage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/planets-mlops/deploy/infra"
	"github.com/planets-mlops/deploy/internal/config"
	"github.com/planets-mlops/deploy/internal/fingerprint"
	"github.com/planets-mlops/deploy/internal/localcloud/baseimages"
	"github.com/planets-mlops/deploy/internal/localcloud/dockerd"
)

// Platform is the platform the image is built for, the program's default.
const Platform = "linux/amd64"

// BuildOptions configure Build.
type BuildOptions struct {
	// ProjectDir is the repository: model/ and hack/stand-in-bases.sh.
	ProjectDir string
	// StageRoot is the deployment's project root: the context is staged at
	// StageRoot/fingerprint.StagingDir, as the program stages it.
	StageRoot string
	// Registry is the registry's host:port; Name the image's name in it.
	Registry, Name string
	// Progress receives the stand-ins' and docker's progress; nil discards.
	Progress io.Writer
	// Externals are files of the context known by content address (a model
	// DVC tracks), fetched to stage it as the program stages them.
	Externals []fingerprint.External
}

// Image is a built and pushed model image.
type Image struct {
	// Ref is the image pinned by the digest the registry returned:
	// <registry>/<name>@sha256:...
	Ref string
	// Tag is <registry>/<name>:<fingerprint>.
	Tag         string
	Fingerprint string
	// Size is the image's uncompressed size in bytes, as docker reports it.
	Size int64
	// BuildArgs are the stand-in bases it was built on.
	BuildArgs map[string]string
}

// Build stages model/, builds it on the stand-in bases, and pushes it.
// Failures come as one line naming what failed and how to fix it.
func Build(ctx context.Context, docker dockerd.CLI, opts BuildOptions) (*Image, error) {
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	modelDir := filepath.Join(opts.ProjectDir, "model")
	contextDir := filepath.Join(opts.StageRoot, fingerprint.StagingDir)
	model, err := fingerprint.Read(ctx, modelDir, fingerprint.Inputs{Platform: Platform}, opts.Externals...)
	if err != nil {
		return nil, err
	}
	if err := model.Stage(contextDir); err != nil {
		return nil, err
	}
	fp := model.Fingerprint
	buildArgs, err := baseimages.Ensure(ctx, opts.ProjectDir, progress)
	if err != nil {
		return nil, err
	}
	proxy, err := serveModuleCache(ctx, modelDir)
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	secret := filepath.Join(opts.StageRoot, ".build", "goproxy")
	if err := os.WriteFile(secret, []byte(proxy.url), 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(secret)

	img := &Image{Fingerprint: fp, Tag: fmt.Sprintf("%s/%s:%s", opts.Registry, opts.Name, fp), BuildArgs: buildArgs}
	args := []string{"build", "--platform", Platform, "--progress", "plain",
		// RUN steps reach the module cache on 127.0.0.1, and npm its registry
		// as the host does.
		"--network", "host",
		"--secret", "id=goproxy,src=" + secret,
		"--file", filepath.Join(contextDir, "Dockerfile"), "--tag", img.Tag}
	// The host's CA bundle, for npm behind a TLS-intercepting proxy.
	if bundle := hostCABundle(); bundle != "" {
		args = append(args, "--secret", "id=ca-certificates,src="+bundle)
	}
	for _, key := range slices.Sorted(maps.Keys(buildArgs)) {
		args = append(args, "--build-arg", key+"="+buildArgs[key])
	}
	var log bytes.Buffer
	build := docker.Command(ctx, append(args, contextDir)...)
	build.Stdout = io.MultiWriter(&log, progress)
	build.Stderr = build.Stdout
	if err := build.Run(); err != nil {
		reason := buildError(log.String())
		if strings.Contains(reason, "model check failed") {
			// The image's own check of its model (model/Dockerfile, -check).
			return nil, fmt.Errorf("docker build of model/Dockerfile failed (%v): %s; fix the model, or write its report (go run ./cmd/evaluate in model/), and run again", err, reason)
		}
		return nil, fmt.Errorf("docker build of model/Dockerfile failed (%v): %s; fix the Dockerfile, or the stand-in bases (hack/stand-in-bases.sh), and run again", err, reason)
	}

	push := docker.Command(ctx, "push", img.Tag)
	log.Reset()
	push.Stdout = io.MultiWriter(&log, progress)
	push.Stderr = push.Stdout
	if err := push.Run(); err != nil {
		// The tag names a registry that does not have the image: not kept.
		docker.Output(context.Background(), "image", "rm", img.Tag)
		return nil, fmt.Errorf("the registry at %s refused the push of %s (%v): %s; check that it runs and accepts pushes (internal/localcloud/registry)", opts.Registry, img.Tag, err, lastLine(log.String()))
	}
	digest := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindStringSubmatch(log.String())
	if digest == nil {
		return nil, fmt.Errorf("docker push %s printed no digest: %s", img.Tag, lastLine(log.String()))
	}
	img.Ref = fmt.Sprintf("%s/%s@%s", opts.Registry, opts.Name, digest[1])

	size, err := docker.Output(ctx, "image", "inspect", "--format", "{{.Size}}", img.Tag)
	if err != nil {
		return nil, err
	}
	if img.Size, err = strconv.ParseInt(size, 10, 64); err != nil {
		return nil, fmt.Errorf("docker image inspect: size %q: %w", size, err)
	}
	return img, nil
}

// hostCABundle is the CA bundle the host's TLS clients trust ($SSL_CERT_FILE,
// else Debian's), or "" when there is none.
func hostCABundle() string {
	for _, path := range []string{os.Getenv("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"} {
		if info, err := os.Stat(path); path != "" && err == nil && info.Mode().IsRegular() {
			return path
		}
	}
	return ""
}

// buildError is the line of a BuildKit log that says what failed, preceded
// by the last line the failing step printed (such as the model check's
// reason), when it printed one.
func buildError(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	reason := ""
	for i := len(lines) - 1; i >= 0; i-- {
		line := strings.TrimSpace(lines[i])
		if m := stepFailed.FindStringSubmatch(line); m != nil && reason == "" {
			// "#14 ERROR: ...": the step's own output is "#14 0.215 text".
			output := regexp.MustCompile(`^#` + m[1] + ` \d+\.\d+ (.+)$`)
			for j := i - 1; j >= 0 && reason == ""; j-- {
				if o := output.FindStringSubmatch(strings.TrimSpace(lines[j])); o != nil {
					reason = o[1]
				}
			}
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if line := strings.TrimSpace(lines[i]); strings.HasPrefix(line, "error:") || strings.Contains(line, " ERROR:") || strings.HasPrefix(line, "ERROR:") {
			if reason != "" {
				return reason + " (" + line + ")"
			}
			return line
		}
	}
	return lastLine(log)
}

// stepFailed is BuildKit's plain-progress line for a failed step.
var stepFailed = regexp.MustCompile(`^#(\d+) ERROR: `)

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}

// moduleProxy serves the host's Go module cache as a module proxy on
// 127.0.0.1 (its download directory has the proxy protocol's layout), so
// the build's `go mod download` needs no network of its own.
type moduleProxy struct {
	url    string
	server *http.Server
}

// serveModuleCache downloads modelDir's modules into the host's module
// cache (Go's ordinary client, a no-op when they are there) and serves it.
func serveModuleCache(ctx context.Context, modelDir string) (*moduleProxy, error) {
	download := exec.CommandContext(ctx, "go", "mod", "download")
	download.Dir = modelDir
	if out, err := download.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go mod download in %s: %v: %s", modelDir, err, lastLine(string(out)))
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	root := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	p := &moduleProxy{
		url:    "http://" + listener.Addr().String(),
		server: &http.Server{Handler: http.FileServer(http.Dir(root)), ReadHeaderTimeout: 10 * time.Second},
	}
	go p.server.Serve(listener)
	return p, nil
}

func (p *moduleProxy) Close() error { return p.server.Close() }

// DeployedRestrictions are the model server's restrictions as the program
// deploys it with the project's defaults (Pulumi.yaml in projectDir): the
// same infra.Restrictions the pod spec is written from.
func DeployedRestrictions(projectDir string) (infra.ServerRestrictions, error) {
	project, err := workspace.LoadProject(filepath.Join(projectDir, "Pulumi.yaml"))
	if err != nil {
		return infra.ServerRestrictions{}, err
	}
	defaultOf := func(key string) (string, error) {
		for _, name := range []string{key, config.Namespace + ":" + key} {
			if c, ok := project.Config[name]; ok && c.Default != nil {
				return fmt.Sprint(c.Default), nil
			}
		}
		return "", fmt.Errorf("Pulumi.yaml: no default for %s", key)
	}
	var r infra.Resources
	if r.CPULimit, err = defaultOf("cpuLimit"); err != nil {
		return infra.ServerRestrictions{}, err
	}
	if r.MemoryLimit, err = defaultOf("memoryLimit"); err != nil {
		return infra.ServerRestrictions{}, err
	}
	return infra.Restrictions(r), nil
}

// Container is the model image running under Docker.
type Container struct {
	ID string
	// URL is the server's address, published on 127.0.0.1.
	URL string

	docker  dockerd.CLI
	started time.Time
}

// RunArgs are the `docker run` flags that give a container exactly the
// restrictions r: its user, a read-only root filesystem, no capabilities,
// no new privileges, the engine's default seccomp profile (RuntimeDefault:
// no flag), r's memory (no swap, as on Kubernetes nodes) and CPU limits, no
// mounts (so no service-account token), and r.Port published on 127.0.0.1.
func RunArgs(r infra.ServerRestrictions) ([]string, error) {
	if r.SeccompProfile != "RuntimeDefault" {
		return nil, fmt.Errorf("seccomp profile %q: only RuntimeDefault (the engine's default) is supported", r.SeccompProfile)
	}
	if r.AutomountServiceAccountToken {
		return nil, errors.New("a service-account token is mounted in the pod: Docker has none to give")
	}
	memory, err := resource.ParseQuantity(r.MemoryLimit)
	if err != nil {
		return nil, fmt.Errorf("memory limit %q: %w", r.MemoryLimit, err)
	}
	cpu, err := resource.ParseQuantity(r.CPULimit)
	if err != nil {
		return nil, fmt.Errorf("CPU limit %q: %w", r.CPULimit, err)
	}
	args := []string{"--platform", Platform,
		"--user", fmt.Sprintf("%d:%d", r.UID, r.GID),
		"--memory", strconv.FormatInt(memory.Value(), 10), "--memory-swap", strconv.FormatInt(memory.Value(), 10),
		"--cpus", strconv.FormatFloat(float64(cpu.MilliValue())/1000, 'f', 3, 64),
		"--publish", fmt.Sprintf("127.0.0.1::%d", r.Port),
	}
	if r.ReadOnlyRootFilesystem {
		args = append(args, "--read-only")
	}
	if !r.AllowPrivilegeEscalation {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	for _, c := range r.DropCapabilities {
		args = append(args, "--cap-drop", c)
	}
	return args, nil
}

// Run starts ref under the restrictions r and returns at once; see
// WaitReady and Stop.
func Run(ctx context.Context, docker dockerd.CLI, ref string, r infra.ServerRestrictions) (*Container, error) {
	args, err := RunArgs(r)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	id, err := docker.Output(ctx, append(append([]string{"run", "--detach"}, args...), ref)...)
	if err != nil {
		return nil, fmt.Errorf("starting the model image: %w", err)
	}
	c := &Container{ID: id, docker: docker, started: started}
	published, err := docker.Output(ctx, "port", id, fmt.Sprintf("%d/tcp", r.Port))
	if err != nil {
		c.Remove()
		return nil, err
	}
	c.URL = "http://" + strings.TrimSpace(strings.Split(published, "\n")[0])
	return c, nil
}

// WaitReady polls probe.Path until it answers 200 or the startup probe's
// budget (PeriodSeconds x FailureThreshold) is spent, and returns the time
// from `docker run` (a pull included) to the first 200.
func (c *Container) WaitReady(ctx context.Context, probe infra.ProbeBudget) (time.Duration, error) {
	start := c.started
	client := &http.Client{Timeout: time.Duration(probe.TimeoutSeconds) * time.Second}
	// Polled more often than the probe, to measure; the budget is the probe's.
	budget := time.Duration(probe.PeriodSeconds*probe.FailureThreshold) * time.Second
	for time.Since(start) < budget {
		if resp, err := client.Get(c.URL + probe.Path); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		if state, _ := c.docker.Output(ctx, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", c.ID); !strings.HasPrefix(state, "running") {
			return 0, fmt.Errorf("the model container stopped before it was ready (%s): %s", state, c.Logs(ctx))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("%s did not answer 200 within the startup probe's %s: %s", probe.Path, budget, c.Logs(ctx))
}

// Stop sends SIGTERM, as the kubelet does, waits up to grace for the exit,
// and returns the exit code; the container is removed either way.
func (c *Container) Stop(ctx context.Context, grace time.Duration) (int, error) {
	defer c.Remove()
	if _, err := c.docker.Output(ctx, "kill", "--signal", "TERM", c.ID); err != nil {
		return 0, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	code, err := c.docker.Output(waitCtx, "wait", c.ID)
	if err != nil {
		return 0, fmt.Errorf("the model container did not exit within %s of SIGTERM: %w", grace, err)
	}
	return strconv.Atoi(code)
}

// Remove removes the container, running or not.
func (c *Container) Remove() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.docker.Output(ctx, "rm", "--force", c.ID)
}

// Logs is what the container printed.
func (c *Container) Logs(ctx context.Context) string {
	out, err := c.docker.Command(ctx, "logs", c.ID).CombinedOutput()
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(out))
}

// Prediction is /predict's answer.
type Prediction struct {
	Prediction    string             `json:"prediction"`
	Probabilities map[string]float64 `json:"probabilities"`
}

// Predict sends the image file as MLEM's clients did (multipart field
// "file") and returns the status and the raw answer.
func Predict(ctx context.Context, baseURL, imagePath string) (int, []byte, error) {
	image, err := os.ReadFile(imagePath)
	if err != nil {
		return 0, nil, err
	}
	var body bytes.Buffer
	form := multipart.NewWriter(&body)
	part, err := form.CreateFormFile("file", filepath.Base(imagePath))
	if err != nil {
		return 0, nil, err
	}
	part.Write(image)
	form.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/predict", &body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", form.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, answer, err
}

// Predicted is the class /predict answered, or an error naming its answer.
func Predicted(status int, answer []byte) (string, error) {
	var p Prediction
	if status != http.StatusOK || json.Unmarshal(answer, &p) != nil || p.Prediction == "" {
		return "", fmt.Errorf("/predict answered %d %s", status, answer)
	}
	return p.Prediction, nil
}
