// Package deploy is the project's main job on a machine without a
// cloud: it builds the model image from model/Dockerfile (on the stand-in
// bases) and pushes it to a registry on 127.0.0.1, runs the real program with
// the real Pulumi engine and Kubernetes provider against a throwaway control
// plane on 127.0.0.1 (the kubernetes target, the Deployment pinned to the
// pushed digest) with one real node (containerd, kubelet, kube-proxy:
// internal/localcloud/node) that pulls the image from that registry and runs
// its pods, shows that a second `up` finds nothing to do and leaves the pods
// alone, and asks the deployed pods for one prediction through the Service's
// NodePort on 127.0.0.1, the endpoint a user can curl.
package deploy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
	"github.com/planets-mlops/deploy/internal/localcloud/dockerd"
	"github.com/planets-mlops/deploy/internal/localcloud/modelimage"
	"github.com/planets-mlops/deploy/internal/localcloud/pulumienv"
	"github.com/planets-mlops/deploy/internal/localcloud/registry"
)

// Options configure Run.
type Options struct {
	// Program is the Pulumi program to deploy, for an inline workspace whose
	// project directory is the given root.
	Program func(projectRoot string) pulumi.RunFunc
	// ToolchainBin holds pulumi, pulumi-resource-kubernetes and the control
	// plane's binaries (hack/toolchain.sh prints it).
	ToolchainBin string
	// ProjectDir holds Pulumi.yaml and model/.
	ProjectDir string
	// Image is sent to /predict; empty skips the prediction.
	Image string
	// Hold keeps the cluster serving, after the prediction, until ctx ends
	// (Ctrl-C), so its endpoint can be tried.
	Hold bool
	// Out receives the report; BuildLog the image build's progress (nil
	// discards it).
	Out, BuildLog io.Writer
}

// Run deploys, re-deploys, serves and cleans up after itself.
func Run(ctx context.Context, opts Options) error {
	out := opts.Out
	tmp, err := os.MkdirTemp("", "mlops-local-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	docker, err := dockerd.Find(ctx)
	if err != nil {
		return err
	}
	reg, err := registry.Start(filepath.Join(tmp, "registry"))
	if err != nil {
		return err
	}
	defer reg.Close()
	// The inline program's project directory: where docker.Image would find
	// the staged context, and so where the build stages it too.
	workDir := filepath.Join(tmp, "work")
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return err
	}
	fmt.Fprintf(out, "== building the model image (model/Dockerfile, stand-in bases) and pushing it to the registry on %s\n", reg.Host)
	start := time.Now()
	img, err := modelimage.Build(ctx, docker, modelimage.BuildOptions{
		ProjectDir: opts.ProjectDir, StageRoot: workDir, Registry: reg.Host, Name: "planets/planet-classifier", Progress: opts.BuildLog,
	})
	if err != nil {
		return err
	}
	// Named after this run's registry: untagged when done (BuildKit keeps
	// the layers cached).
	defer docker.Output(context.Background(), "image", "rm", img.Tag)
	fmt.Fprintf(out, "   %s\n   %.1f MB, in %.1fs\n", img.Ref, float64(img.Size)/1e6, time.Since(start).Seconds())

	fmt.Fprintln(out, "\n== starting a local control plane (etcd, kube-apiserver, controllers) and a real node (containerd, kubelet, kube-proxy) on 127.0.0.1")
	start = time.Now()
	localCluster, err := cluster.Start(ctx, cluster.Options{
		BinDir: opts.ToolchainBin, RealNode: true, Registries: []string{reg.Host}, Dir: filepath.Join(tmp, "cluster"),
	})
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := localCluster.Stop(stopCtx); err != nil {
			fmt.Fprintf(out, "stopping the local cluster: %v\n", err)
		}
	}()
	fmt.Fprintf(out, "   ready in %.1fs\n", time.Since(start).Seconds())

	env, err := pulumienv.New(filepath.Join(tmp, "pulumi"), opts.ToolchainBin)
	if err != nil {
		return err
	}
	project, err := pulumienv.LoadProject(opts.ProjectDir)
	if err != nil {
		return err
	}
	// The image just built, by the digest the registry returned.
	config := pulumienv.KubernetesTarget(localCluster, img.Ref, filepath.Join(opts.ProjectDir, "model"), "NodePort")
	stack, err := env.InlineStack(ctx, "local", project, opts.Program(workDir), workDir, config, auto.EnvVars(env.Vars))
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

	kube, err := kubernetes.NewForConfig(localCluster.RESTConfig())
	if err != nil {
		return err
	}
	deployment, err := kube.AppsV1().Deployments("live").Get(ctx, "planet-classifier", metav1.GetOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n== Deployment live/planet-classifier: %d/%d replicas ready, generation %d\n",
		deployment.Status.ReadyReplicas, *deployment.Spec.Replicas, deployment.Generation)
	pods, err := kube.CoreV1().Pods("live").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, pod := range pods.Items {
		restarts := int32(0)
		for _, status := range pod.Status.ContainerStatuses {
			restarts += status.RestartCount
		}
		fmt.Fprintf(out, "   pod %s on node %s: %s, %d restarts\n", pod.Name, pod.Spec.NodeName, pod.Status.Phase, restarts)
	}
	service, err := kube.CoreV1().Services("live").Get(ctx, "planet-classifier", metav1.GetOptions{})
	if err != nil {
		return err
	}
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", service.Spec.Ports[0].NodePort)
	fmt.Fprintf(out, "\n== the model service, from this machine: %s (NodePort, kube-proxy)\n", endpoint)

	if opts.Image == "" {
		return nil
	}
	status, answer, err := modelimage.Predict(ctx, endpoint, opts.Image)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   curl -F file=@%s %s/predict\n   %d %s %s\n", opts.Image, endpoint, status, http.StatusText(status), answer)
	if status != http.StatusOK {
		return fmt.Errorf("predict answered %d %s", status, answer)
	}
	if opts.Hold {
		fmt.Fprintf(out, "\n   serving at %s until Ctrl-C\n", endpoint)
		<-ctx.Done()
	}
	return nil
}

func changes(summary *map[string]int) string {
	if summary == nil {
		return "no changes reported"
	}
	var parts []string
	changed := false
	for op, n := range *summary {
		parts = append(parts, fmt.Sprintf("%d %s", n, op))
		changed = changed || (op != "same" && n > 0)
	}
	slices.Sort(parts)
	if !changed {
		return "no changes (" + strings.Join(parts, ", ") + ")"
	}
	return strings.Join(parts, ", ")
}
