package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
	"github.com/planets-mlops/deploy/internal/localcloud/goimage"
	"github.com/planets-mlops/deploy/internal/localcloud/node"
	"github.com/planets-mlops/deploy/internal/testenv"
)

// TestRealNodeServesAPodThroughANodePortAndLeavesNothingBehind starts the
// control plane with a real node, runs a pod from an image made here, calls
// it through a NodePort on 127.0.0.1, stops everything, and checks that the
// host is as before: no process of the node's binaries, no mount under its
// directory, no new network interface, no kube-proxy/CNI iptables chain, no
// pod cgroup.
func TestRealNodeServesAPodThroughANodePortAndLeavesNothingBehind(t *testing.T) {
	bin := testenv.NeedToolchain(t)
	testenv.NeedRoot(t) // containers, mounts, iptables
	// Long enough to wait for the machine's one node lock while another
	// package's test (test/e2e's proofs) holds it.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	dir := t.TempDir()
	started := time.Now()
	local, err := cluster.Start(ctx, cluster.Options{BinDir: bin, RealNode: true, Dir: filepath.Join(dir, "cluster"), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			local.Stop(context.Background())
		}
	}()
	t.Logf("TIMING control plane + real node ready: %.1fs", time.Since(started).Seconds())

	step := time.Now()
	archive := filepath.Join(dir, "hello.oci.tar")
	const image = "localcloud.invalid/hello:test"
	if err := goimage.Build(ctx, goimage.Image{
		Package: "./testdata/hello", Ref: image, Binary: "/hello", User: "65532:65532", ExposedPort: 8080,
	}, archive); err != nil {
		t.Fatal(err)
	}
	if err := local.Node.ImportImage(ctx, archive); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING build and import the hello image: %.1fs", time.Since(step).Seconds())

	kube, err := kubernetes.NewForConfig(local.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "hello"}
	step = time.Now()
	if _, err := kube.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Labels: labels},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: new(false),
			Containers: []corev1.Container{{
				Name: "hello", Image: image, ImagePullPolicy: corev1.PullNever,
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}},
					PeriodSeconds: 1,
				},
			}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	service, err := kube.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hello"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: labels,
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://127.0.0.1:" + strconv.Itoa(int(service.Spec.Ports[0].NodePort)) + "/"

	// Ready pod, then the NodePort: kube-proxy programs it a moment after the
	// endpoints appear, so poll (bounded) until it answers.
	var answer string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pod, err := kube.CoreV1().Pods("default").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if podReady(pod) {
			if answer, err = get(ctx, url); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod not serving through %s within 3 minutes: phase %s, conditions %+v, statuses %+v, last error %v",
				url, pod.Status.Phase, pod.Status.Conditions, pod.Status.ContainerStatuses, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("TIMING pod created -> answering through the NodePort: %.1fs", time.Since(step).Seconds())
	if want := "hello from hello\n"; answer != want {
		t.Errorf("GET %s = %q, want %q", url, answer, want)
	}
	t.Logf("GET %s: %q", url, answer)
	nodeLinks := append(bridgePorts(t), node.BridgeName)
	if len(nodeLinks) < 2 {
		t.Errorf("no pod interface on bridge %s: %v", node.BridgeName, nodeLinks)
	}

	step = time.Now()
	stopped = true
	if err := local.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
	t.Logf("TIMING stop: %.1fs", time.Since(step).Seconds())

	// Checked here independently of what Stop itself verifies, holding the
	// machine's node lock so that another package's node (go test runs
	// packages in parallel) cannot start meanwhile and be taken for a
	// leftover.
	release, err := node.HoldMachine(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for _, link := range nodeLinks {
		if _, err := os.Stat(filepath.Join("/sys/class/net", link)); err == nil {
			t.Errorf("network interface left behind: %s", link)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mounts)) {
		if strings.Contains(line, dir) {
			t.Errorf("mount left behind: %s", line)
		}
	}
	var binaries []string
	for _, name := range node.Binaries {
		binaries = append(binaries, filepath.Join(bin, name))
	}
	for _, pid := range pidsOf(t, binaries) {
		t.Errorf("process left behind: %d %s", pid, cmdline(pid))
	}
	chains, err := node.IptablesChains(ctx, "KUBE-", "CNI-")
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) > 0 {
		t.Errorf("iptables chains left behind: %v", chains)
	}
	for _, hierarchy := range []string{"memory", "cpu", "pids", "systemd", "unified"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", hierarchy, "mlops-node")); err == nil {
			t.Errorf("cgroup left behind in %s", hierarchy)
		}
	}
}

func podReady(pod *corev1.Pod) bool {
	for _, condition := range pod.Status.Conditions {
		if condition.Type == corev1.PodReady {
			return condition.Status == corev1.ConditionTrue
		}
	}
	return false
}

func get(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(body), nil
}

// bridgePorts lists the network interfaces attached to the node's bridge:
// the host ends of the pods' veths.
func bridgePorts(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("/sys/class/net", node.BridgeName, "brif"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, entry := range entries {
		names = append(names, entry.Name())
	}
	return names
}

// pidsOf lists processes running one of binaries.
func pidsOf(t *testing.T, binaries []string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", entry.Name(), "exe")); err == nil && slices.Contains(binaries, strings.TrimSuffix(exe, " (deleted)")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func cmdline(pid int) string {
	content, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(content), "\x00", " ")
}
