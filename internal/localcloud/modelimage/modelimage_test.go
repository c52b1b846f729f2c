package modelimage

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/planets-mlops/deploy/internal/dataset"
	"github.com/planets-mlops/deploy/internal/localcloud/dockerd"
	"github.com/planets-mlops/deploy/internal/localcloud/registry"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// The image is built from model/Dockerfile with docker build (BuildKit, on
// the stand-in bases), pushed to a registry and pulled back by the digest it
// returned, then run with exactly the Deployment's restrictions (read from
// the code that writes the pod spec): it must become ready within the
// startup probe's budget, classify the held-out images as training measured
// (model/artifacts/metrics.json), and exit 0 on SIGTERM.
func TestModelImageBuildsAndRunsTheWayTheDeploymentRunsIt(t *testing.T) {
	docker := fixture.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	projectDir, _ := filepath.Abs("../../..")
	heldOut := fixture.HeldOut(t, projectDir)
	want, err := dataset.TrainingConfusion(projectDir)
	if err != nil {
		t.Fatal(err)
	}

	reg, err := registry.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	start := time.Now()
	img, err := Build(ctx, docker, BuildOptions{
		ProjectDir: projectDir, StageRoot: t.TempDir(), Registry: reg.Host, Name: "planet-classifier", Progress: verbose{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stand-ins + build + push: %.1f s; %s", time.Since(start).Seconds(), img.Ref)
	t.Logf("image size: %.1f MB (goal < 100 MB)", float64(img.Size)/1e6)
	if img.Size >= 100e6 {
		t.Errorf("the image is %.1f MB, over the 100 MB goal", float64(img.Size)/1e6)
	}

	// Only the registry has it now: the run pulls it by digest.
	if _, err := docker.Output(ctx, "image", "rm", img.Tag); err != nil {
		t.Fatal(err)
	}
	if _, err := docker.Output(ctx, "image", "inspect", img.Ref); err == nil {
		t.Fatalf("%s is still in the engine after removing its tag", img.Ref)
	}
	restrictions, err := DeployedRestrictions(projectDir)
	if err != nil {
		t.Fatal(err)
	}
	// Pulled under the throwaway registry's name: not kept.
	defer docker.Output(context.Background(), "image", "rm", img.Ref)
	c, err := Run(ctx, docker, img.Ref, restrictions)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove()
	t.Logf("running %s with %v", c.ID[:12], must(RunArgs(restrictions)))

	ready, err := c.WaitReady(ctx, restrictions.StartupProbe)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("check: %s answered 200 after %.2f s (startup probe budget %d s)", restrictions.StartupProbe.Path, ready.Seconds(),
		restrictions.StartupProbe.PeriodSeconds*restrictions.StartupProbe.FailureThreshold)

	checkEnforced(t, ctx, docker, c, restrictions.UID, restrictions.MemoryLimit)

	confusion := dataset.Confusion{}
	start = time.Now()
	for _, image := range heldOut {
		status, answer, err := Predict(ctx, c.URL, image.Path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Predicted(status, answer)
		if err != nil {
			t.Fatalf("%s: %v", image.Path, err)
		}
		confusion.Add(image.Class, got)
	}
	t.Logf("check: %d held-out images classified through %s in %.1f s", len(heldOut), c.URL, time.Since(start).Seconds())
	for _, class := range slices.Sorted(maps.Keys(want)) {
		right := confusion[class][class]
		t.Logf("  %-8s %2d/%d right", class, right, sum(confusion[class]))
		if right == 0 {
			t.Errorf("no held-out %s image was classified as %s: %v", class, class, confusion[class])
		}
		if fmt.Sprint(confusion[class]) != fmt.Sprint(want[class]) {
			t.Errorf("%s: the image answers %v, training measured %v", class, confusion[class], want[class])
		}
	}

	code, err := c.Stop(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("check: SIGTERM: exit code %d", code)
	if code != 0 {
		t.Errorf("SIGTERM: exit code %d, want 0", code)
	}
}

// checkEnforced reads what the kernel enforces on the server's process
// (/proc/<pid>/status) and what the engine applied, not only the flags.
func checkEnforced(t *testing.T, ctx context.Context, docker dockerd.CLI, c *Container, uid int, memoryLimit string) {
	t.Helper()
	raw, err := docker.Output(ctx, "inspect", c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var inspected []struct {
		State      struct{ Pid int }
		Mounts     []any
		HostConfig struct {
			ReadonlyRootfs bool
			SecurityOpt    []string
			CapDrop        []string
			Memory         int64
			MemorySwap     int64
			NanoCpus       int64
			PortBindings   map[string][]struct{ HostIp, HostPort string }
		}
	}
	if err := json.Unmarshal([]byte(raw), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("docker inspect: %v", err)
	}
	in := inspected[0]
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.State.Pid))
	if err != nil {
		t.Fatalf("reading the server's /proc status: %v", err)
	}
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `:\s*(.*)$`).FindSubmatch(status)
		if m == nil {
			return ""
		}
		return string(m[1])
	}
	for _, check := range []struct{ what, got, want string }{
		{"user", strings.Fields(field("Uid"))[0], fmt.Sprint(uid)},
		{"effective capabilities", field("CapEff"), "0000000000000000"},
		{"bounding capabilities", field("CapBnd"), "0000000000000000"},
		{"no new privileges", field("NoNewPrivs"), "1"},
		{"seccomp (2: filter)", field("Seccomp"), "2"},
		{"read-only root filesystem", fmt.Sprint(in.HostConfig.ReadonlyRootfs), "true"},
		{"seccomp profile", fmt.Sprint(!slices.ContainsFunc(in.HostConfig.SecurityOpt, func(o string) bool { return strings.Contains(o, "seccomp") })), "true"},
		{"mounts (no service-account token)", fmt.Sprint(len(in.Mounts)), "0"},
		{"memory = memory+swap", fmt.Sprint(in.HostConfig.Memory == in.HostConfig.MemorySwap && in.HostConfig.Memory > 0), "true"},
		{"published on", in.HostConfig.PortBindings["8080/tcp"][0].HostIp, "127.0.0.1"},
	} {
		t.Logf("check: %-34s %s", check.what, check.got)
		if check.got != check.want {
			t.Errorf("%s: got %s, want %s", check.what, check.got, check.want)
		}
	}
	t.Logf("check: limits: memory %d bytes (%s), CPU %.3f", in.HostConfig.Memory, memoryLimit, float64(in.HostConfig.NanoCpus)/1e9)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

type verbose struct{ t *testing.T }

func (w verbose) Write(p []byte) (int, error) {
	if os.Getenv("MLOPS_VERBOSE") != "" {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// A registry that refuses the push, and a Dockerfile that fails, each end
// the build with one line naming what failed and how to fix it.
func TestModelImageBuildFailuresSayWhatFailedInOneLine(t *testing.T) {
	docker := fixture.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	projectDir, _ := filepath.Abs("../../..")

	t.Run("the registry refuses the push", func(t *testing.T) {
		reg, err := registry.Start(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		reg.Close() // nothing answers there any more
		_, err = Build(ctx, docker, BuildOptions{ProjectDir: projectDir, StageRoot: t.TempDir(), Registry: reg.Host, Name: "planet-classifier"})
		requireOneLine(t, err, "the registry at "+reg.Host+" refused the push", "check that it runs")
	})

	t.Run("the Dockerfile fails", func(t *testing.T) {
		broken := t.TempDir()
		if err := os.CopyFS(filepath.Join(broken, "model"), os.DirFS(filepath.Join(projectDir, "model"))); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(filepath.Join(broken, "hack"), os.DirFS(filepath.Join(projectDir, "hack"))); err != nil {
			t.Fatal(err)
		}
		dockerfile := filepath.Join(broken, "model", "Dockerfile")
		content, err := os.ReadFile(dockerfile)
		if err != nil {
			t.Fatal(err)
		}
		content = []byte(strings.Replace(string(content), "COPY main.go ./", "COPY main.go ./\nRUN echo the broken step >&2; false", 1))
		if err := os.WriteFile(dockerfile, content, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = Build(ctx, docker, BuildOptions{ProjectDir: broken, StageRoot: t.TempDir(), Registry: "127.0.0.1:1", Name: "planet-classifier"})
		requireOneLine(t, err, "docker build of model/Dockerfile failed", "the broken step", "fix the Dockerfile")
	})
}

// A corrupt model fails the build at the image's own check (model/Dockerfile
// runs `/model/server -check`), before anything is pushed, with one line
// naming the model file and what is wrong. It prints how long the build
// took: with the server's stages cached (any earlier build), seconds.
func TestModelImageBuildRefusesACorruptModel(t *testing.T) {
	docker := fixture.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	projectDir, _ := filepath.Abs("../../..")
	for _, tc := range []struct {
		name  string
		model func(good []byte) []byte
		want  string
	}{
		{"not ONNX", func([]byte) []byte { return []byte("this is not an ONNX model\n") }, "onnxruntime cannot load it"},
		{"truncated", func(good []byte) []byte { return good[:len(good)/2] }, "onnxruntime cannot load it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broken := t.TempDir()
			for _, dir := range []string{"model", "hack"} {
				if err := os.CopyFS(filepath.Join(broken, dir), os.DirFS(filepath.Join(projectDir, dir))); err != nil {
					t.Fatal(err)
				}
			}
			modelFile := filepath.Join(broken, "model", "artifacts", "planets.onnx")
			good, err := os.ReadFile(modelFile)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(modelFile, tc.model(good), 0o644); err != nil {
				t.Fatal(err)
			}
			reg, err := registry.Start(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			start := time.Now()
			_, err = Build(ctx, docker, BuildOptions{ProjectDir: broken, StageRoot: t.TempDir(), Registry: reg.Host, Name: "planet-classifier", Progress: verbose{t}})
			t.Logf("TIMING docker build of a model that is %s failed after %.1f s", tc.name, time.Since(start).Seconds())
			requireOneLine(t, err, "docker build of model/Dockerfile failed", "model check failed", "/model/planets.onnx", tc.want, "fix the model")
			if tags := must(docker.Output(ctx, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", reg.Host+"/planet-classifier")); tags != "" {
				t.Errorf("the failed build left images: %s", tags)
			}
		})
	}
}

func requireOneLine(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if strings.Contains(msg, "\n") {
		t.Errorf("the error spans lines: %q", msg)
	}
	for _, part := range parts {
		if !strings.Contains(msg, part) {
			t.Errorf("the error does not say %q: %q", part, msg)
		}
	}
}
