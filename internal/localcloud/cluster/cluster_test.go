package cluster_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

// A Deployment on the local cluster must become Available with all replicas
// Ready: that is what the Pulumi provider waits for.
func TestDeploymentBecomesAvailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	local := fixture.Cluster(ctx, t, cluster.Options{Nodes: 2})

	clientset, err := kubernetes.NewForConfig(local.RESTConfig())
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
	pids := local.PIDs()
	if len(pids) != len(cluster.Binaries) {
		t.Errorf("PIDs() = %v, want one per binary %v", pids, cluster.Binaries)
	}
	if err := local.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Stop (kill -0: %v)", pid, err)
		}
	}
}
