package e2e

// End-to-end test of the Kubernetes target: the real Pulumi CLI and
// Kubernetes provider (built by hack/toolchain.sh) drive this program, through
// the Automation API as an inline program, against a real local control plane
// (internal/localcloud/cluster) and a throwaway file:// backend. Nothing leaves
// 127.0.0.1.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
	"github.com/planets-mlops/deploy/internal/localcloud/pulumienv"
	"github.com/planets-mlops/deploy/internal/program"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// e2eProgram is the program under test, as `pulumi up` runs it.
var e2eProgram = program.Program("")

const (
	e2eStackName = "e2e"
	// A prebuilt image pinned by digest, so that nothing is built (there is no
	// Docker here) and kwok "runs" it without pulling.
	e2eImage = "registry.local/planets/model@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	// The defaults in Pulumi.yaml that the assertions rely on.
	e2eNamespace = "live"
	e2eReplicas  = 2
)

func TestE2EKubernetesTarget(t *testing.T) {
	pulumiEnv := fixture.Pulumi(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	testStart := time.Now()
	timed := func(step string, since time.Time) { t.Logf("TIMING %-40s %6.1fs", step, time.Since(since).Seconds()) }

	tmp := pulumiEnv.Dir

	step := time.Now()
	local := fixture.Cluster(ctx, t, cluster.Options{Nodes: 2})
	kube, err := kubernetes.NewForConfig(local.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	timed("start local control plane", step)

	// A copy of the model's build context that the test may change, inside a
	// workspace whose other files are outside the build context.
	modelDir := e2eCopyModel(t, tmp)
	workspaceDir := filepath.Dir(modelDir)

	step = time.Now()
	// ClusterIP: a LoadBalancer never gets an address here and the provider
	// would wait for one.
	stack := e2eStack(ctx, t, pulumiEnv, pulumienv.KubernetesTarget(local, e2eImage, modelDir, "ClusterIP"), nil)
	timed("create stack", step)

	var first auto.UpResult
	var deployment *appsv1.Deployment
	ok := t.Run("1_up_creates_and_deployment_becomes_available", func(t *testing.T) {
		step := time.Now()
		first = fixture.Up(ctx, t, stack)
		timed("1 first up", step)
		if changes := e2eChanges(first.Summary.ResourceChanges); changes["create"] == 0 || len(changes) != 1 {
			t.Errorf("first up: want only creates, got %v", changes)
		}
		if _, err := kube.CoreV1().Namespaces().Get(ctx, e2eNamespace, metav1.GetOptions{}); err != nil {
			t.Errorf("namespace %q: %v", e2eNamespace, err)
		}
		deployment = e2eTheDeployment(ctx, t, kube)
		e2eAssertRolledOut(t, deployment)
		services, err := kube.CoreV1().Services(e2eNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(services.Items) != 1 {
			t.Fatalf("want exactly one Service in %q, got %v", e2eNamespace, e2eNames(t, services))
		}
		if got := services.Items[0].Spec.Type; got != corev1.ServiceTypeClusterIP {
			t.Errorf("service type %q, want ClusterIP", got)
		}
		for _, output := range []string{"endpoint", "modelFingerprint", "image"} {
			if value, ok := first.Outputs[output]; !ok || value.Value == nil || value.Value == "" {
				t.Errorf("stack output %q missing or empty: %v", output, first.Outputs)
			}
		}
		if got := first.Outputs["image"].Value; got != e2eImage {
			t.Errorf("image output %v, want the configured %s", got, e2eImage)
		}
		e2eAssertFingerprintAnnotation(t, deployment, first.Outputs["modelFingerprint"].Value)
		budgets, err := kube.PolicyV1().PodDisruptionBudgets(e2eNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(budgets.Items) != 1 {
			t.Errorf("want one PodDisruptionBudget with %d replicas, got %v", e2eReplicas, e2eNames(t, budgets))
		}
	})
	if !ok {
		t.FailNow()
	}

	ok = t.Run("2_second_up_and_preview_change_nothing", func(t *testing.T) {
		step := time.Now()
		second := fixture.Up(ctx, t, stack)
		timed("2 second up", step)
		e2eAssertOnlySame(t, "second up", e2eChanges(second.Summary.ResourceChanges))
		after := e2eTheDeployment(ctx, t, kube)
		if after.Generation != deployment.Generation {
			t.Errorf("deployment generation %d -> %d after an up with nothing changed", deployment.Generation, after.Generation)
		}
		step = time.Now()
		e2ePreviewNoChanges(ctx, t, stack, "preview after second up")
		timed("2 preview", step)
	})
	if !ok {
		t.FailNow()
	}

	ok = t.Run("3a_one_byte_of_the_model_without_its_report_fails_preview_and_up_and_changes_nothing", func(t *testing.T) {
		modelFile := filepath.Join(modelDir, "artifacts", "planets.onnx")
		good, err := os.ReadFile(modelFile)
		if err != nil {
			t.Fatal(err)
		}
		stateBefore := e2eStateURNs(ctx, t, stack)
		clusterBefore := e2eClusterSnapshot(ctx, t, kube)
		flipOneByte(t, modelFile)
		step := time.Now()
		_, previewErr := stack.Preview(ctx)
		timed("3a preview refused at the gate", step)
		step = time.Now()
		_, upErr := stack.Up(ctx)
		timed("3a up refused at the gate", step)
		for what, err := range map[string]error{"preview": previewErr, "up": upErr} {
			if err == nil {
				t.Errorf("%s with a model its report is not of succeeded", what)
			} else if line := e2eLineContaining(err.Error(), "is the report of another model"); line == "" {
				t.Errorf("%s: the error does not say the report is of another model:\n%v", what, err)
			} else {
				t.Logf("%s refused: %s", what, line)
			}
		}
		if got := e2eStateURNs(ctx, t, stack); !slices.Equal(got, stateBefore) {
			t.Errorf("state changed by a refused model:\nbefore %v\nafter  %v", stateBefore, got)
		}
		if got := e2eClusterSnapshot(ctx, t, kube); got != clusterBefore {
			t.Errorf("cluster changed by a refused model:\nbefore %s\nafter  %s", clusterBefore, got)
		}
		if err := os.WriteFile(modelFile, good, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if !ok {
		t.FailNow()
	}

	ok = t.Run("3b_a_new_model_rolls_out_once", func(t *testing.T) {
		before := e2eTheDeployment(ctx, t, kube)
		replicaSetsBefore := e2eReplicaSets(ctx, t, kube, before)
		// The second model and its report (a model alone is refused, 3a).
		fixture.UseModel(t, modelDir, filepath.Join(e2eSecondModelProject, "model", "artifacts"))

		step := time.Now()
		operations := make(chan events.EngineEvent)
		updated := make(chan []string, 1)
		go func() { updated <- e2eUpdatedTypes(operations) }()
		result := fixture.Up(ctx, t, stack, optup.EventStreams(operations))
		timed("3b up after a model change", step)

		changes := e2eChanges(result.Summary.ResourceChanges)
		if changes["update"] != 1 || len(changes) != 2 || changes["same"] == 0 {
			t.Errorf("want exactly one update and the rest same, got %v", changes)
		}
		if got := <-updated; !slices.Equal(got, []string{"kubernetes:apps/v1:Deployment"}) {
			t.Errorf("updated resources: %v, want only the Deployment", got)
		}
		if first.Outputs["modelFingerprint"].Value == result.Outputs["modelFingerprint"].Value {
			t.Errorf("modelFingerprint output unchanged (%v) after a model file changed", result.Outputs["modelFingerprint"].Value)
		}
		after := e2eTheDeployment(ctx, t, kube)
		if after.Generation != before.Generation+1 {
			t.Errorf("deployment generation %d -> %d, want one rollout", before.Generation, after.Generation)
		}
		e2eAssertRolledOut(t, after)
		e2eAssertFingerprintAnnotation(t, after, result.Outputs["modelFingerprint"].Value)
		if got := e2eReplicaSets(ctx, t, kube, after); len(got) != len(replicaSetsBefore)+1 {
			t.Errorf("ReplicaSets %v -> %v, want exactly one new", replicaSetsBefore, got)
		}
		deployment = after
	})
	if !ok {
		t.FailNow()
	}

	ok = t.Run("4_modes_mtimes_and_files_outside_the_context_change_nothing", func(t *testing.T) {
		// Permission bits other than the executable bit, mtimes, and files
		// that are outside the build context or excluded by .dockerignore.
		// (The executable bit is part of the image, so it is not here.)
		chmod(t, filepath.Join(modelDir, "main.go"), 0o600)
		chmod(t, filepath.Join(modelDir, "Dockerfile"), 0o664)
		longAgo := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
		err := filepath.WalkDir(modelDir, func(path string, entry os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Chtimes(path, longAgo, longAgo)
		})
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(workspaceDir, "NOTES.md"), "outside the model dir\n")
		writeFile(t, filepath.Join(workspaceDir, "infra", "extra.go"), "package infra\n")
		writeFile(t, filepath.Join(modelDir, "internal", "server", "extra_test.go"), "package server\n")
		writeFile(t, filepath.Join(modelDir, "README.md"), "excluded by .dockerignore\n")

		step := time.Now()
		e2ePreviewNoChanges(ctx, t, stack, "preview after mode/mtime/outside changes")
		timed("4 preview", step)
		step = time.Now()
		result := fixture.Up(ctx, t, stack)
		timed("4 up", step)
		e2eAssertOnlySame(t, "up after mode/mtime/outside changes", e2eChanges(result.Summary.ResourceChanges))
		if after := e2eTheDeployment(ctx, t, kube); after.Generation != deployment.Generation {
			t.Errorf("deployment generation %d -> %d", deployment.Generation, after.Generation)
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("5_bad_config_fails_preview_naming_the_key_and_changes_nothing", func(t *testing.T) {
		for _, bad := range []struct{ key, value string }{
			{"mlops:replicas", "0"},
			{"mlops:servicePort", "70000"},
		} {
			stateBefore := e2eStateURNs(ctx, t, stack)
			clusterBefore := e2eClusterSnapshot(ctx, t, kube)
			if err := stack.SetConfig(ctx, bad.key, auto.ConfigValue{Value: bad.value}); err != nil {
				t.Fatal(err)
			}
			step := time.Now()
			_, previewErr := stack.Preview(ctx)
			timed("5 preview "+bad.key+"="+bad.value, step)
			_, upErr := stack.Up(ctx)
			for what, err := range map[string]error{"preview": previewErr, "up": upErr} {
				if err == nil {
					t.Errorf("%s with %s=%s succeeded, want a config error", what, bad.key, bad.value)
				} else if line := e2eLineContaining(err.Error(), bad.key); line == "" {
					t.Errorf("%s with %s=%s: the error does not name %q:\n%v", what, bad.key, bad.value, bad.key, err)
				} else {
					t.Logf("%s with %s=%s rejected: %s", what, bad.key, bad.value, line)
				}
			}
			if err := stack.RemoveConfig(ctx, bad.key); err != nil {
				t.Fatal(err)
			}
			if got := e2eStateURNs(ctx, t, stack); !slices.Equal(got, stateBefore) {
				t.Errorf("state changed by a failed %s=%s:\nbefore %v\nafter  %v", bad.key, bad.value, stateBefore, got)
			}
			if got := e2eClusterSnapshot(ctx, t, kube); got != clusterBefore {
				t.Errorf("cluster changed by a failed %s=%s:\nbefore %s\nafter  %s", bad.key, bad.value, clusterBefore, got)
			}
		}
		// And with the key back to its default, nothing is pending.
		e2ePreviewNoChanges(ctx, t, stack, "preview after restoring the config")
	})
	timed("whole e2e (including control plane)", testStart)
}

// e2eCopyModel copies model/ into the test's workspace and returns its path.
func e2eCopyModel(t *testing.T, tmp string) string {
	t.Helper()
	modelDir := filepath.Join(tmp, "workspace", "model")
	if err := os.CopyFS(modelDir, os.DirFS("model")); err != nil {
		t.Fatalf("copy model/: %v", err)
	}
	return modelDir
}

// e2eStack is the stack of the program under test in env, with the project
// settings of the repository's Pulumi.yaml (so its config defaults apply),
// set to the target's configuration (pulumienv.KubernetesTarget) and more.
func e2eStack(ctx context.Context, t *testing.T, env *pulumienv.Env, target, more map[string]auto.ConfigValue) auto.Stack {
	t.Helper()
	config := maps.Clone(target)
	maps.Copy(config, more)
	return fixture.Stack(ctx, t, env, e2eStackName, ".", e2eProgram, config)
}

func e2ePreviewNoChanges(ctx context.Context, t *testing.T, stack auto.Stack, what string) {
	t.Helper()
	var output bytes.Buffer
	result, err := stack.Preview(ctx, optpreview.ExpectNoChanges(), optpreview.ProgressStreams(&output), optpreview.ErrorProgressStreams(&output))
	if err != nil {
		t.Fatalf("%s: expected no changes: %v\n%s", what, err, output.String())
	}
	changes := map[string]int{}
	for op, count := range result.ChangeSummary {
		changes[string(op)] = count
	}
	e2eAssertOnlySame(t, what, changes)
}

// e2eChanges returns the non-zero counts of an update summary.
func e2eChanges(summary *map[string]int) map[string]int {
	changes := map[string]int{}
	if summary != nil {
		for op, count := range *summary {
			if count != 0 {
				changes[op] = count
			}
		}
	}
	return changes
}

func e2eAssertOnlySame(t *testing.T, what string, changes map[string]int) {
	t.Helper()
	for op, count := range changes {
		if op != string(apitype.OpSame) && count != 0 {
			t.Errorf("%s: want only same, got %v", what, changes)
			return
		}
	}
}

// e2eUpdatedTypes drains an event stream and returns the resource types of
// the update steps, sorted.
func e2eUpdatedTypes(stream <-chan events.EngineEvent) []string {
	var types []string
	for event := range stream {
		if event.ResourcePreEvent != nil && event.ResourcePreEvent.Metadata.Op == apitype.OpUpdate {
			types = append(types, event.ResourcePreEvent.Metadata.Type)
		}
	}
	slices.Sort(types)
	return types
}

// e2eTheDeployment returns the one Deployment of the model service.
func e2eTheDeployment(ctx context.Context, t *testing.T, kube kubernetes.Interface) *appsv1.Deployment {
	t.Helper()
	deployments, err := kube.AppsV1().Deployments(e2eNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(deployments.Items) != 1 {
		t.Fatalf("want exactly one Deployment in %q, got %d", e2eNamespace, len(deployments.Items))
	}
	return &deployments.Items[0]
}

func e2eAssertRolledOut(t *testing.T, deployment *appsv1.Deployment) {
	t.Helper()
	status := deployment.Status
	available := false
	for _, condition := range status.Conditions {
		if condition.Type == appsv1.DeploymentAvailable {
			available = condition.Status == corev1.ConditionTrue
		}
	}
	if !available || status.ReadyReplicas != e2eReplicas || status.UpdatedReplicas != e2eReplicas || status.ObservedGeneration != deployment.Generation {
		t.Errorf("deployment %s not rolled out: available=%v generation=%d status=%+v", deployment.Name, available, deployment.Generation, status)
	}
	for _, container := range deployment.Spec.Template.Spec.Containers {
		if container.Image != e2eImage {
			t.Errorf("container %s runs %s, want the configured %s", container.Name, container.Image, e2eImage)
		}
	}
}

// e2eAssertFingerprintAnnotation checks that the pod template carries the
// model fingerprint, which is what makes a model change roll out.
func e2eAssertFingerprintAnnotation(t *testing.T, deployment *appsv1.Deployment, fingerprint any) {
	t.Helper()
	for _, value := range deployment.Spec.Template.Annotations {
		if value == fingerprint {
			return
		}
	}
	t.Errorf("no pod template annotation carries the model fingerprint %v: %v", fingerprint, deployment.Spec.Template.Annotations)
}

// e2eReplicaSets returns the names of the ReplicaSets the Deployment owns.
func e2eReplicaSets(ctx context.Context, t *testing.T, kube kubernetes.Interface, deployment *appsv1.Deployment) []string {
	t.Helper()
	replicaSets, err := kube.AppsV1().ReplicaSets(deployment.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, replicaSet := range replicaSets.Items {
		if owner := metav1.GetControllerOf(&replicaSet); owner != nil && owner.UID == deployment.UID {
			names = append(names, replicaSet.Name)
		}
	}
	slices.Sort(names)
	return names
}

// e2eClusterSnapshot summarizes what the program manages in the cluster: the
// namespaces, and for each object in the model's namespace its generation and
// a digest of its labels, annotations and spec. Resource versions are left
// out on purpose: controllers bump them with status updates at any time.
func e2eClusterSnapshot(ctx context.Context, t *testing.T, kube kubernetes.Interface) string {
	t.Helper()
	digest := func(meta metav1.ObjectMeta, spec any) string {
		encoded, err := json.Marshal([]any{meta.Labels, meta.Annotations, spec})
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(encoded)
		return fmt.Sprintf("%s@%d:%x", meta.Name, meta.Generation, sum[:6])
	}
	var parts []string
	namespaces, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	parts = append(parts, "namespaces="+strings.Join(e2eNames(t, namespaces), ","))
	deployments, err := kube.AppsV1().Deployments(e2eNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deployments.Items {
		parts = append(parts, "deployment/"+digest(d.ObjectMeta, d.Spec))
	}
	services, err := kube.CoreV1().Services(e2eNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range services.Items {
		parts = append(parts, "service/"+digest(s.ObjectMeta, s.Spec))
	}
	budgets, err := kube.PolicyV1().PodDisruptionBudgets(e2eNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range budgets.Items {
		parts = append(parts, "pdb/"+digest(b.ObjectMeta, b.Spec))
	}
	replicaSets, err := kube.AppsV1().ReplicaSets(e2eNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	parts = append(parts, fmt.Sprintf("replicasets=%d", len(replicaSets.Items)))
	return strings.Join(parts, " ")
}

// e2eStateURNs returns the URNs in the stack's state, sorted.
func e2eStateURNs(ctx context.Context, t *testing.T, stack auto.Stack) []string {
	t.Helper()
	exported, err := stack.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var deployment apitype.DeploymentV3
	if err := json.Unmarshal(exported.Deployment, &deployment); err != nil {
		t.Fatal(err)
	}
	var urns []string
	for _, resource := range deployment.Resources {
		urns = append(urns, string(resource.URN))
	}
	slices.Sort(urns)
	return urns
}

// e2eNames returns the sorted names of the items of a list object.
func e2eNames(t *testing.T, list runtime.Object) []string {
	t.Helper()
	items, err := meta.ExtractList(list)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, item := range items {
		object, err := meta.Accessor(item)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, object.GetName())
	}
	slices.Sort(names)
	return names
}

// e2eLineContaining returns the first line of text that contains substr.
func e2eLineContaining(text, substr string) string {
	for line := range strings.Lines(text) {
		if strings.Contains(line, substr) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// flipOneByte changes exactly one byte in the middle of a file.
func flipOneByte(t *testing.T, path string) {
	t.Helper()
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(content) == 0 {
		t.Fatalf("%s is empty", path)
	}
	content[len(content)/2] ^= 0x01
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, info.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
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
