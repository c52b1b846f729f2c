package e2e

// End-to-end proofs on a real node: the model image built from
// model/Dockerfile, pushed to the local registry, pulled by containerd, run
// by the kubelet; traffic from 127.0.0.1 through the Service's NodePort
// (kube-proxy) while the program rolls out new models.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/events"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/planets-mlops/deploy/internal/dataset"
	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
	"github.com/planets-mlops/deploy/internal/localcloud/pulumienv"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// e2eSecondModelProject holds the second model (model/artifacts/: the same
// net trained with another seed, training/train.py --seed 78, and its
// metrics): other weights, still correct answers.
const e2eSecondModelProject = "testdata/seed78"

var e2eSecondModel = filepath.Join(e2eSecondModelProject, "model", "artifacts", "planets.onnx")

// e2eProgressDeadline bounds a rollout without progress in these proofs, so
// that a model that cannot start fails the `up` in a minute, not ten.
const e2eProgressDeadline = "60"

func TestE2ERealNode(t *testing.T) {
	pulumiEnv := fixture.Pulumi(t)   // the toolchain, an isolated PULUMI_HOME and backend
	env := e2eRealNodeEnvironment(t) // docker, registry, held-out images
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	testStart := time.Now()
	timed := func(step string, since time.Time) { t.Logf("TIMING %-45s %6.1fs", step, time.Since(since).Seconds()) }
	tmp := pulumiEnv.Dir

	modelDir := e2eCopyModel(t, tmp)
	modelFile := filepath.Join(modelDir, "artifacts", "planets.onnx")

	step := time.Now()
	firstImage := env.build(ctx, t, modelDir)
	timed("build and push the model image", step)

	step = time.Now()
	local := fixture.Cluster(ctx, t, cluster.Options{
		RealNode: true, Registries: []string{env.registry}, Dir: filepath.Join(tmp, "cluster"),
	})
	kube, err := kubernetes.NewForConfig(local.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	timed("start control plane and real node", step)

	stack := e2eStack(ctx, t, pulumiEnv, pulumienv.KubernetesTarget(local, firstImage, modelDir, "NodePort"), map[string]auto.ConfigValue{
		"mlops:progressDeadlineSeconds": {Value: e2eProgressDeadline},
	})

	var baseURL string
	var servingPods map[string]string // pod name -> UID
	ok := t.Run("1_up_runs_the_image_pinned_by_digest_and_answers_every_class", func(t *testing.T) {
		step := time.Now()
		fixture.Up(ctx, t, stack)
		timed("1 first up (pods pull, start, pass probes)", step)
		baseURL = e2eNodePortURL(ctx, t, kube)
		pods := e2eServingPods(ctx, t, kube, firstImage)
		servingPods = e2ePodUIDs(pods)
		e2eAssertHeldOutAnswers(ctx, t, baseURL, env.heldOut, ".")
	})
	if !ok {
		t.FailNow()
	}

	ok = t.Run("2_second_up_changes_nothing_and_the_same_pods_keep_serving", func(t *testing.T) {
		step := time.Now()
		second := fixture.Up(ctx, t, stack)
		timed("2 second up", step)
		e2eAssertOnlySame(t, "second up", e2eChanges(second.Summary.ResourceChanges))
		if got := e2ePodUIDs(e2eServingPods(ctx, t, kube, firstImage)); !maps.Equal(got, servingPods) {
			t.Errorf("pods changed after an up with nothing to do: %v -> %v", servingPods, got)
		}
		e2eAssertHeldOutAnswers(ctx, t, baseURL, e2eOnePerClass(env.heldOut), ".")
	})
	if !ok {
		t.FailNow()
	}

	probe := env.heldOut[0].Path
	var secondImage string
	ok = t.Run("3_new_model_rolls_out_under_load_without_a_failed_request", func(t *testing.T) {
		fixture.UseModel(t, modelDir, filepath.Join(e2eSecondModelProject, "model", "artifacts")) // the model and its report
		step := time.Now()
		secondImage = env.build(ctx, t, modelDir)
		timed("3 build and push the second model's image", step)
		if err := stack.SetConfig(ctx, "mlops:image", auto.ConfigValue{Value: secondImage}); err != nil {
			t.Fatal(err)
		}

		oldAnswer := e2eOneAnswer(ctx, t, baseURL, probe)
		load := e2eStartLoad(ctx, t, baseURL, probe)
		operations := make(chan events.EngineEvent)
		updated := make(chan []string, 1)
		go func() { updated <- e2eUpdatedTypes(operations) }()
		step = time.Now()
		result := fixture.Up(ctx, t, stack, optup.EventStreams(operations))
		rollout := time.Since(step)
		// A moment more of load: the old pods' drain ends after the rollout.
		time.Sleep(10 * time.Second)
		seen := load.Stop()
		t.Logf("PROOF 3 rollout under load: %s; rollout (up) took %.1fs; answers by model: %v", seen, rollout.Seconds(), e2eByModel(seen.Answers, oldAnswer))
		if seen.Failed != 0 {
			t.Errorf("%d of %d requests failed during the rollout: %v", seen.Failed, seen.Total, seen.Failures)
		}
		if seen.Total < 10 {
			t.Errorf("only %d requests during the rollout: the load did not run", seen.Total)
		}
		if changes := e2eChanges(result.Summary.ResourceChanges); changes["update"] != 1 {
			t.Errorf("want exactly one update, got %v", changes)
		}
		if got := <-updated; !slices.Equal(got, []string{"kubernetes:apps/v1:Deployment"}) {
			t.Errorf("updated resources: %v, want only the Deployment", got)
		}
		pods := e2eServingPods(ctx, t, kube, secondImage)
		servingPods = e2ePodUIDs(pods)
		// Afterwards, every answer is the new model's: the same answer every
		// time, and not the old model's.
		after := e2eRepeatAnswers(ctx, t, baseURL, probe, 50)
		if len(after) != 1 || after[oldAnswer] != 0 {
			t.Errorf("answers after the rollout: %v; want one answer, not the old model's %s", after, oldAnswer)
		}
		e2eAssertHeldOutAnswers(ctx, t, baseURL, env.heldOut, e2eSecondModelProject)
	})
	if !ok {
		t.FailNow()
	}

	ok = t.Run("4_a_corrupt_model_fails_its_image_build_and_the_up_before_anything_changes", func(t *testing.T) {
		// Before the image checked its own model, this image built and
		// pushed, and `up` failed only when the rollout ran out of time
		// (1.5 x progressDeadlineSeconds: 91 s here, 15 min by default).
		writeFile(t, modelFile, "this is not an ONNX model\n")
		step := time.Now()
		_, buildErr := env.tryBuild(ctx, t, modelDir)
		t.Logf("PROOF 4a the corrupt model's image build failed after %.1fs: %v", time.Since(step).Seconds(), buildErr)
		if buildErr == nil || !strings.Contains(buildErr.Error(), "model check failed") || !strings.Contains(buildErr.Error(), "/model/planets.onnx") {
			t.Errorf("the image build of a corrupt model: %v; want the model check's error naming /model/planets.onnx", buildErr)
		}

		// The stack still runs the second image; its model directory now
		// holds the corrupt model (beside the second model's report).
		load := e2eStartLoad(ctx, t, baseURL, probe)
		step = time.Now()
		_, upErr := stack.Up(ctx)
		failedAfter := time.Since(step)
		seen := load.Stop()
		t.Logf("PROOF 4b up with the corrupt model under load: %s; up failed after %.1fs", seen, failedAfter.Seconds())
		if upErr == nil {
			t.Fatal("up with a corrupt model succeeded")
		}
		if line := e2eLineContaining(upErr.Error(), "is the report of another model"); line == "" {
			t.Errorf("the up's error does not say the report is of another model:\n%v", upErr)
		} else {
			t.Logf("up failed: %s", line)
		}
		if seen.Failed != 0 {
			t.Errorf("%d of %d requests failed while the corrupt model was tried: %v", seen.Failed, seen.Total, seen.Failures)
		}
		if got := e2ePodUIDs(e2eServingPods(ctx, t, kube, secondImage)); !maps.Equal(got, servingPods) {
			t.Errorf("serving pods changed: %v -> %v", servingPods, got)
		}
		copyFile(t, e2eSecondModel, modelFile)
	})
	if !ok {
		t.FailNow()
	}

	t.Run("5_pod_deleted_gracefully_then_a_container_killed", func(t *testing.T) {
		pods := e2eServingPods(ctx, t, kube, secondImage)
		load := e2eStartLoad(ctx, t, baseURL, probe)
		step := time.Now()
		if err := kube.CoreV1().Pods(e2eNamespace).Delete(ctx, pods[0].Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e2eWaitServing(ctx, t, kube, secondImage, func(p []corev1.Pod) bool {
			return !slices.ContainsFunc(p, func(pod corev1.Pod) bool { return pod.Name == pods[0].Name })
		})
		replaced := time.Since(step)
		time.Sleep(10 * time.Second) // the deleted pod's drain
		seen := load.Stop()
		t.Logf("PROOF 5a graceful pod deletion under load: %s; 2 pods ready again after %.1fs", seen, replaced.Seconds())
		if seen.Failed != 0 {
			t.Errorf("%d of %d requests failed around a graceful pod deletion: %v", seen.Failed, seen.Total, seen.Failures)
		}

		pods = e2eServingPods(ctx, t, kube, secondImage)
		victim := pods[0]
		load = e2eStartLoad(ctx, t, baseURL, probe)
		time.Sleep(2 * time.Second)
		step = time.Now()
		if err := local.Node.KillContainer(ctx, victim.Status.ContainerStatuses[0].ContainerID); err != nil {
			t.Fatal(err)
		}
		e2eWaitServing(ctx, t, kube, secondImage, func(p []corev1.Pod) bool {
			for _, pod := range p {
				if pod.UID == victim.UID && pod.Status.ContainerStatuses[0].RestartCount > 0 {
					return true
				}
				if pod.UID == victim.UID {
					return false
				}
			}
			return true // replaced by a new pod
		})
		recovered := time.Since(step)
		seen = load.Stop()
		t.Logf("PROOF 5b container killed with SIGKILL under load: %s; %d failed; 2 pods ready again after %.1fs; failures: %v",
			seen, seen.Failed, recovered.Seconds(), seen.Failures)
	})
	timed("whole real-node e2e (including builds and cluster)", testStart)
}

// e2eNodePortURL is the model Service's NodePort on 127.0.0.1.
func e2eNodePortURL(ctx context.Context, t *testing.T, kube kubernetes.Interface) string {
	t.Helper()
	services, err := kube.CoreV1().Services(e2eNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(services.Items) != 1 || services.Items[0].Spec.Type != corev1.ServiceTypeNodePort {
		t.Fatalf("want one NodePort Service in %s, got %v", e2eNamespace, e2eNames(t, services))
	}
	return "http://127.0.0.1:" + strconv.Itoa(int(services.Items[0].Spec.Ports[0].NodePort))
}

// e2eServingPods returns the model's pods, asserting that exactly
// e2eReplicas run image (pinned by digest, the digest also what containerd
// pulled), are ready, and have never restarted.
func e2eServingPods(ctx context.Context, t *testing.T, kube kubernetes.Interface, image string) []corev1.Pod {
	t.Helper()
	pods, err := kube.CoreV1().Pods(e2eNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, digest, _ := strings.Cut(image, "@")
	var serving []corev1.Pod
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil || len(pod.Status.ContainerStatuses) != 1 {
			continue
		}
		status := pod.Status.ContainerStatuses[0]
		if pod.Spec.Containers[0].Image != image || !status.Ready {
			continue
		}
		if !strings.HasSuffix(status.ImageID, digest) {
			t.Errorf("pod %s runs image id %s, want digest %s", pod.Name, status.ImageID, digest)
		}
		if status.RestartCount != 0 {
			t.Errorf("pod %s restarted %d times", pod.Name, status.RestartCount)
		}
		serving = append(serving, pod)
	}
	if len(serving) != e2eReplicas {
		var states []string
		for _, pod := range pods.Items {
			states = append(states, fmt.Sprintf("%s image=%s phase=%s statuses=%+v", pod.Name, pod.Spec.Containers[0].Image, pod.Status.Phase, pod.Status.ContainerStatuses))
		}
		t.Fatalf("want %d ready pods of %s, got %d:\n%s", e2eReplicas, image, len(serving), strings.Join(states, "\n"))
	}
	return serving
}

// e2eWaitServing waits (bounded) until e2eReplicas pods of image are ready
// and done says the change it waits for happened.
func e2eWaitServing(ctx context.Context, t *testing.T, kube kubernetes.Interface, image string, done func([]corev1.Pod) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		pods, err := kube.CoreV1().Pods(e2eNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ready []corev1.Pod
		for _, pod := range pods.Items {
			if pod.DeletionTimestamp == nil && len(pod.Status.ContainerStatuses) == 1 && pod.Status.ContainerStatuses[0].Ready && pod.Spec.Containers[0].Image == image {
				ready = append(ready, pod)
			}
		}
		if len(ready) == e2eReplicas && done(pods.Items) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods of %s not back to %d ready within 5 minutes", image, e2eReplicas)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func e2ePodUIDs(pods []corev1.Pod) map[string]string {
	uids := map[string]string{}
	for _, pod := range pods {
		uids[pod.Name] = string(pod.UID)
	}
	return uids
}

// e2eAssertHeldOutAnswers sends held-out images through the Service and
// checks every answer against the confusion matrix training measured for
// the model of project (the same model answers exactly as it did in
// training: same weights, same preprocessing). With all of the held-out
// images, the matrices must be equal; with fewer, each answer must be one
// training gave for that class.
func e2eAssertHeldOutAnswers(ctx context.Context, t *testing.T, baseURL string, images []dataset.Image, project string) {
	t.Helper()
	want, err := dataset.TrainingConfusion(project)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	got := dataset.Confusion{}
	for _, image := range images {
		body, contentType := e2ePredictBody(t, image.Path)
		answer, err := e2ePredict(ctx, client, baseURL, body, contentType)
		if err != nil {
			t.Fatalf("%s: %v", image.Path, err)
		}
		var prediction e2ePrediction
		if err := json.Unmarshal([]byte(answer), &prediction); err != nil {
			t.Fatal(err)
		}
		got.Add(image.Class, prediction.Prediction)
		if want[image.Class][prediction.Prediction] == 0 {
			t.Errorf("held-out %s (%s) predicted as %s, which training never answered for it", image.Class, image.Path, prediction.Prediction)
		}
	}
	right := 0
	for class := range got {
		right += got[class][class]
	}
	t.Logf("%d held-out images through %s/predict: %d right", len(images), baseURL, right)
	total := 0
	for class := range want {
		for _, n := range want[class] {
			total += n
		}
	}
	if len(images) == total {
		for _, class := range slices.Sorted(maps.Keys(want)) {
			if fmt.Sprint(got[class]) != fmt.Sprint(want[class]) {
				t.Errorf("%s: the deployed model answers %v, training measured %v", class, got[class], want[class])
			}
		}
	}
}

// e2eOnePerClass is the first held-out image of every class.
func e2eOnePerClass(images []dataset.Image) []dataset.Image {
	var first []dataset.Image
	for _, image := range images {
		if !slices.ContainsFunc(first, func(f dataset.Image) bool { return f.Class == image.Class }) {
			first = append(first, image)
		}
	}
	return first
}

func e2eOneAnswer(ctx context.Context, t *testing.T, baseURL, image string) string {
	t.Helper()
	answers := e2eRepeatAnswers(ctx, t, baseURL, image, 1)
	for answer := range answers {
		return answer
	}
	t.Fatal("no answer")
	return ""
}

// e2eRepeatAnswers sends image n times and counts the distinct answers.
func e2eRepeatAnswers(ctx context.Context, t *testing.T, baseURL, image string, n int) map[string]int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	body, contentType := e2ePredictBody(t, image)
	answers := map[string]int{}
	for range n {
		answer, err := e2ePredict(ctx, client, baseURL, body, contentType)
		if err != nil {
			t.Fatal(err)
		}
		answers[answer]++
	}
	return answers
}

// e2eByModel summarizes answers as old/new model counts.
func e2eByModel(answers map[string]int, oldAnswer string) string {
	var parts []string
	for answer, count := range answers {
		who := "new model"
		if answer == oldAnswer {
			who = "old model"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", who, count))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	content, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, content, 0o644); err != nil {
		t.Fatal(err)
	}
}
