// Package localdeploy is the project's main job on a machine without a
// cloud: it runs the real program with the real Pulumi engine and Kubernetes
// provider against a throwaway control plane on 127.0.0.1 (the kubernetes
// target), shows that a second `up` finds nothing to do, and then serves the
// committed model with the model server and asks it for one prediction.
//
// No Docker engine or registry is at hand, so nothing is built or pulled:
// the Deployment gets an image reference pinned to the model fingerprint, and
// kwok's fake nodes report its pods Running without pulling it. The model
// server answers from a local build of model/ instead.
package localdeploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/planets-mlops/deploy/internal/fingerprint"
	"github.com/planets-mlops/deploy/internal/localcluster"
)

// Options configure Run.
type Options struct {
	// Program is the Pulumi program to deploy.
	Program pulumi.RunFunc
	// ToolchainBin holds pulumi, pulumi-resource-kubernetes and the control
	// plane's binaries (hack/toolchain.sh prints it).
	ToolchainBin string
	// ProjectDir holds Pulumi.yaml and model/.
	ProjectDir string
	// ONNXRuntimeLib is the onnxruntime shared library for the model server.
	ONNXRuntimeLib string
	// Image is sent to /predict; empty skips the prediction.
	Image string
	// Out receives the report.
	Out io.Writer
}

// Run deploys, re-deploys, serves and cleans up after itself.
func Run(ctx context.Context, opts Options) error {
	out := opts.Out
	tmp, err := os.MkdirTemp("", "mlops-local-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintln(out, "== starting a local control plane (etcd, kube-apiserver, controllers, kwok) on 127.0.0.1")
	cluster, err := localcluster.Start(ctx, localcluster.Options{BinDir: opts.ToolchainBin, Nodes: 2, Dir: filepath.Join(tmp, "cluster")})
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cluster.Stop(stopCtx)
	}()

	modelDir := filepath.Join(opts.ProjectDir, "model")
	fp, err := fingerprint.Compute(ctx, modelDir, fingerprint.Inputs{Platform: "linux/amd64"})
	if err != nil {
		return err
	}
	stack, err := newStack(ctx, opts, tmp, map[string]auto.ConfigValue{
		"mlops:target":      {Value: "kubernetes"},
		"mlops:kubeconfig":  {Value: string(cluster.Kubeconfig), Secret: true},
		"mlops:kubeContext": {Value: localcluster.ContextName},
		// Pinned to the fingerprint: a stand-in digest, since nothing is pushed here.
		"mlops:image":       {Value: "localhost:5001/planets/planet-classifier@sha256:" + fp},
		"mlops:modelDir":    {Value: modelDir},
		"mlops:serviceType": {Value: "ClusterIP"},
	})
	if err != nil {
		return err
	}

	for _, run := range []string{"first up: creates the model service", "second up, same model: nothing to do"} {
		fmt.Fprintf(out, "\n== pulumi up (%s)\n", run)
		start := time.Now()
		result, err := stack.Up(ctx, optup.ProgressStreams(io.Discard))
		if err != nil {
			return fmt.Errorf("pulumi up: %w", err)
		}
		fmt.Fprintf(out, "   %s in %.1fs\n", changes(result.Summary.ResourceChanges), time.Since(start).Seconds())
		for _, name := range []string{"endpoint", "image", "modelFingerprint"} {
			fmt.Fprintf(out, "   %-17s %v\n", name, result.Outputs[name].Value)
		}
	}

	kube, err := kubernetes.NewForConfig(cluster.RESTConfig())
	if err != nil {
		return err
	}
	deployment, err := kube.AppsV1().Deployments("live").Get(ctx, "planet-classifier", metav1.GetOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n== Deployment live/planet-classifier: %d/%d replicas ready, generation %d\n",
		deployment.Status.ReadyReplicas, *deployment.Spec.Replicas, deployment.Generation)

	if opts.Image == "" {
		return nil
	}
	return serveOnce(ctx, opts, tmp, modelDir)
}

// newStack is a stack of the inline program in a file:// backend under dir,
// with the project settings (and so the config defaults) of Pulumi.yaml.
func newStack(ctx context.Context, opts Options, dir string, config map[string]auto.ConfigValue) (auto.Stack, error) {
	project, err := workspace.LoadProject(filepath.Join(opts.ProjectDir, "Pulumi.yaml"))
	if err != nil {
		return auto.Stack{}, err
	}
	passphrase := make([]byte, 16)
	rand.Read(passphrase)
	for _, sub := range []string{"state", "home", "work"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return auto.Stack{}, err
		}
	}
	cli, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: filepath.Dir(opts.ToolchainBin)})
	if err != nil {
		return auto.Stack{}, fmt.Errorf("pulumi CLI in %s: %w", opts.ToolchainBin, err)
	}
	stack, err := auto.UpsertStackInlineSource(ctx, "local", project.Name.String(), opts.Program,
		auto.Project(*project),
		auto.Pulumi(cli),
		auto.WorkDir(filepath.Join(dir, "work")),
		auto.EnvVars(map[string]string{
			// The provider is found on PATH; nothing ambient leaks in.
			"PATH":                     opts.ToolchainBin + string(os.PathListSeparator) + os.Getenv("PATH"),
			"PULUMI_HOME":              filepath.Join(dir, "home"),
			"PULUMI_BACKEND_URL":       "file://" + filepath.Join(dir, "state"),
			"PULUMI_CONFIG_PASSPHRASE": hex.EncodeToString(passphrase),
			"PULUMI_SKIP_UPDATE_CHECK": "true",
			"KUBECONFIG":               filepath.Join(dir, "no-ambient-kubeconfig"),
		}))
	if err != nil {
		return auto.Stack{}, err
	}
	return stack, stack.SetAllConfig(ctx, config)
}

func changes(summary *map[string]int) string {
	if summary == nil {
		return "no changes reported"
	}
	var parts []string
	for op, n := range *summary {
		parts = append(parts, fmt.Sprintf("%d %s", n, op))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// serveOnce builds and starts the model server on 127.0.0.1, sends it
// opts.Image as MLEM's clients did (multipart field "file"), prints the
// answer, and stops it with SIGTERM as Kubernetes would.
func serveOnce(ctx context.Context, opts Options, dir, modelDir string) error {
	fmt.Fprintln(opts.Out, "\n== serving the committed model (model/) on 127.0.0.1")
	server := filepath.Join(dir, "model-server")
	build := exec.CommandContext(ctx, "go", "build", "-o", server, ".")
	build.Dir, build.Stderr = modelDir, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the model server: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.CommandContext(ctx, server, "-host", "127.0.0.1", "-port", strconv.Itoa(port),
		"-model-path", filepath.Join(modelDir, "artifacts", "planets.onnx"), "-onnxruntime-lib", opts.ONNXRuntimeLib,
		"-drain-delay", "0s", "-log-level", "warn")
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	if err := waitReady(ctx, base+"/readyz"); err != nil {
		return err
	}
	fmt.Fprintf(opts.Out, "   ready in %.0f ms\n", float64(time.Since(start).Microseconds())/1000)

	image, err := os.ReadFile(opts.Image)
	if err != nil {
		return err
	}
	var body bytes.Buffer
	form := multipart.NewWriter(&body)
	part, _ := form.CreateFormFile("file", filepath.Base(opts.Image))
	part.Write(image)
	form.Close()
	resp, err := http.Post(base+"/predict", form.FormDataContentType(), &body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	fmt.Fprintf(opts.Out, "   curl -F file=@%s %s/predict\n   %s %s\n", opts.Image, base, resp.Status, answer)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("predict answered %s", resp.Status)
	}
	return nil
}

func waitReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("the model server did not become ready within 30s")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
