package localcluster_test

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/planets-mlops/deploy/internal/localcluster"
)

// toolchainBin returns $MLOPS_TOOLCHAIN_BIN, failing in CI and skipping
// loudly elsewhere when it is unset: this test needs real binaries.
func toolchainBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real control plane; skipped with -short")
	}
	bin := os.Getenv("MLOPS_TOOLCHAIN_BIN")
	if bin == "" {
		const msg = "MLOPS_TOOLCHAIN_BIN is unset: run `export MLOPS_TOOLCHAIN_BIN=$(hack/toolchain.sh)` first"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED, NOT TESTED: " + msg)
	}
	return bin
}

// A Deployment on the local cluster must become Available with all replicas
// Ready: that is what the Pulumi provider waits for.
func TestDeploymentBecomesAvailable(t *testing.T) {
	bin := toolchainBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cluster, err := localcluster.Start(ctx, localcluster.Options{BinDir: bin, Nodes: 2, Dir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cluster.Stop(stopCtx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})

	clientset, err := kubernetes.NewForConfig(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "probe"}
	deployment := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "probe",
					Image: "registry.local/probe@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				}}},
			},
		},
	}
	if _, err := clientset.AppsV1().Deployments(metav1.NamespaceDefault).Create(ctx, deployment, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var last *appsv1.Deployment
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		last, err = clientset.AppsV1().Deployments(metav1.NamespaceDefault).Get(ctx, "probe", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, condition := range last.Status.Conditions {
			if condition.Type == appsv1.DeploymentAvailable && condition.Status == corev1.ConditionTrue {
				return last.Status.ReadyReplicas == 2, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("deployment never became available: %v; status: %+v", err, last.Status)
	}

	// Stop must leave none of the processes it started behind.
	pids := cluster.PIDs()
	if len(pids) != len(localcluster.Binaries) {
		t.Errorf("PIDs() = %v, want one per binary %v", pids, localcluster.Binaries)
	}
	if err := cluster.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Stop (kill -0: %v)", pid, err)
		}
	}
}
