package e2e

// What CI's identities can do, proven on a real API server: the program's
// own RBAC (infra.DeployAccess), applied by an admin's `up`, then the real
// Pulumi CLI and Kubernetes provider acting as the deploy and the preview
// identity through impersonation (a kubeconfig with `as:`, what kubectl
// --as does), the way GKE names a Google identity's requests by its email.
// kwok's fake nodes run the pods: RBAC needs no real node.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/sig"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
	"github.com/planets-mlops/deploy/internal/localcloud/pulumienv"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

const (
	// The identities' Kubernetes user names: on GKE, their emails.
	e2eDeployUser  = "mlops-ci@planets-mlops-dev.iam.gserviceaccount.com"
	e2ePreviewUser = "mlops-preview@planets-mlops-dev.iam.gserviceaccount.com"
	// e2eRolloutImage is a second prebuilt image: a model rollout.
	e2eRolloutImage = "registry.local/planets/model@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func TestE2EDeployAndPreviewIdentitiesCanDoOnlyTheirJob(t *testing.T) {
	pulumiEnv := fixture.Pulumi(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tmp := pulumiEnv.Dir
	local := fixture.Cluster(ctx, t, cluster.Options{Nodes: 1})
	admin, err := kubernetes.NewForConfig(local.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	// The same kubeconfig for everyone, as on GKE (gke-gcloud-auth-plugin
	// takes the ambient identity): the provider is not told who it is, the
	// ambient KUBECONFIG is, so the provider's inputs stay the same.
	kubeconfigAs := map[string]string{
		"admin":   e2eKubeconfigAs(t, tmp, local, ""),
		"deploy":  e2eKubeconfigAs(t, tmp, local, e2eDeployUser),
		"preview": e2eKubeconfigAs(t, tmp, local, e2ePreviewUser),
	}
	actAs := func(who string) { t.Setenv("KUBECONFIG", kubeconfigAs[who]) }

	modelDir := e2eCopyModel(t, tmp)
	stack := e2eStack(ctx, t, pulumiEnv, e2eWithoutKubeconfig(pulumienv.KubernetesTarget(local, e2eImage, modelDir, "ClusterIP")), map[string]auto.ConfigValue{
		"mlops:deployUser":  {Value: e2eDeployUser},
		"mlops:previewUser": {Value: e2ePreviewUser},
	})

	ok := t.Run("1_the_admin_applies_workloads_and_RBAC", func(t *testing.T) {
		actAs("admin")
		fixture.Up(ctx, t, stack)
		for _, name := range []string{"mlops-deploy", "mlops-preview"} {
			if _, err := admin.RbacV1().RoleBindings(e2eNamespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
				t.Errorf("RoleBinding %s: %v", name, err)
			}
			if _, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, "mlops-"+e2eNamespace+"-"+strings.TrimPrefix(name, "mlops-"), metav1.GetOptions{}); err != nil {
				t.Errorf("ClusterRoleBinding for %s: %v", name, err)
			}
		}
		binding, err := admin.RbacV1().RoleBindings(e2eNamespace).Get(ctx, "mlops-deploy", metav1.GetOptions{})
		if err == nil && (len(binding.Subjects) != 1 || binding.Subjects[0] != (rbacv1.Subject{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: e2eDeployUser})) {
			t.Errorf("the deploy RoleBinding's subjects are %+v, want only the user %s", binding.Subjects, e2eDeployUser)
		}
	})
	if !ok {
		t.FailNow()
	}

	ok = t.Run("2_the_deploy_identity_does_a_no-op_up_and_a_model_rollout", func(t *testing.T) {
		actAs("deploy")
		before := e2eTheDeployment(ctx, t, admin)
		noop := fixture.Up(ctx, t, stack)
		e2eAssertOnlySame(t, "the deploy identity's up with nothing to do", e2eChanges(noop.Summary.ResourceChanges))
		if err := stack.SetConfig(ctx, "mlops:image", auto.ConfigValue{Value: e2eRolloutImage}); err != nil {
			t.Fatal(err)
		}
		rollout := fixture.Up(ctx, t, stack)
		if changes := e2eChanges(rollout.Summary.ResourceChanges); changes["update"] != 1 || len(changes) != 2 {
			t.Errorf("the deploy identity's rollout: want one update and the rest same, got %v", changes)
		}
		after := e2eTheDeployment(ctx, t, admin)
		if after.Generation != before.Generation+1 || after.Spec.Template.Spec.Containers[0].Image != e2eRolloutImage {
			t.Errorf("deployment generation %d -> %d, image %s; want one rollout to %s",
				before.Generation, after.Generation, after.Spec.Template.Spec.Containers[0].Image, e2eRolloutImage)
		}
		if after.Status.UpdatedReplicas != e2eReplicas || after.Status.ReadyReplicas != e2eReplicas {
			t.Errorf("rollout not finished: %+v", after.Status)
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("3_the_deploy_identity_cannot_read_secrets_exec_or_create_outside_the_namespace", func(t *testing.T) {
		deploy := e2eClientAs(t, local, e2eDeployUser)
		e2eAllowed(t, "get the Deployment in "+e2eNamespace, func() error {
			_, err := deploy.AppsV1().Deployments(e2eNamespace).Get(ctx, "planet-classifier", metav1.GetOptions{})
			return err
		})
		for what, call := range e2eForbiddenToDeploy(ctx, deploy, admin, t) {
			e2eForbidden(t, "deploy", what, call)
		}
	})

	t.Run("3b_the_deploy_identity_cannot_switch_Pod_Security_off_nor_run_a_privileged_pod", func(t *testing.T) {
		deploy := e2eClientAs(t, local, e2eDeployUser)
		e2eAllowed(t, "get the model's Namespace", func() error {
			_, err := deploy.CoreV1().Namespaces().Get(ctx, e2eNamespace, metav1.GetOptions{})
			return err
		})
		e2eForbidden(t, "deploy", "drop the Namespace's pod-security enforce label (patch)", func() error {
			_, err := deploy.CoreV1().Namespaces().Patch(ctx, e2eNamespace, types.MergePatchType,
				[]byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":null}}}`), metav1.PatchOptions{})
			return err
		})
		e2eForbidden(t, "deploy", "set the Namespace's pod-security enforce label to privileged (update)", func() error {
			ns, err := deploy.CoreV1().Namespaces().Get(ctx, e2eNamespace, metav1.GetOptions{})
			if err != nil {
				return err
			}
			ns.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
			_, err = deploy.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
			return err
		})
		if ns, err := admin.CoreV1().Namespaces().Get(ctx, e2eNamespace, metav1.GetOptions{}); err != nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Fatalf("the model's Namespace: %v, labels %v; want pod-security.kubernetes.io/enforce=restricted", err, ns.Labels)
		}
		privileged := e2ePrivilegedPodSpec()
		e2eForbidden(t, "deploy", "create a privileged Pod", func() error {
			_, err := deploy.CoreV1().Pods(e2eNamespace).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}, Spec: privileged}, metav1.CreateOptions{})
			return err
		})
		// Through a Deployment, which it may write: the ReplicaSet
		// controller's pod creates meet Pod Security admission, which
		// refuses them; no pod ever exists.
		labels := map[string]string{"app": "intruder"}
		intruder := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: privileged},
		}}
		e2eAllowed(t, "create a Deployment in "+e2eNamespace, func() error {
			_, err := deploy.AppsV1().Deployments(e2eNamespace).Create(ctx, intruder, metav1.CreateOptions{})
			return err
		})
		defer func() {
			if err := deploy.AppsV1().Deployments(e2eNamespace).Delete(ctx, "intruder", metav1.DeleteOptions{}); err != nil {
				t.Errorf("deleting the intruder Deployment: %v", err)
			}
		}()
		refusal := ""
		for deadline := time.Now().Add(60 * time.Second); refusal == "" && time.Now().Before(deadline); time.Sleep(time.Second) {
			sets, err := admin.AppsV1().ReplicaSets(e2eNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=intruder"})
			if err != nil {
				t.Fatal(err)
			}
			for _, rs := range sets.Items {
				for _, c := range rs.Status.Conditions {
					if c.Type == appsv1.ReplicaSetReplicaFailure && strings.Contains(c.Message, "violates PodSecurity") {
						refusal = c.Message
					}
				}
			}
		}
		if refusal == "" {
			t.Errorf("the intruder Deployment's ReplicaSet reports no PodSecurity refusal within 60s")
		} else {
			t.Logf("PROOF the privileged pod was refused: %s", refusal)
		}
		if pods, err := admin.CoreV1().Pods(e2eNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=intruder"}); err != nil || len(pods.Items) != 0 {
			t.Errorf("intruder pods: %v, %v; want none", e2eNames(t, pods), err)
		}
	})

	t.Run("4_the_preview_identity_previews_and_changes_nothing", func(t *testing.T) {
		actAs("preview")
		e2ePreviewNoChanges(ctx, t, stack, "the preview identity's preview with nothing to do")
		// A pull request with a new model: the preview shows the rollout...
		if err := stack.SetConfig(ctx, "mlops:image", auto.ConfigValue{Value: e2eImage}); err != nil {
			t.Fatal(err)
		}
		var output bytes.Buffer
		preview, err := stack.Preview(ctx, optpreview.ProgressStreams(&output), optpreview.ErrorProgressStreams(&output))
		if err != nil {
			t.Fatalf("the preview identity's preview of a rollout failed: %v\n%s", err, output.String())
		}
		if preview.ChangeSummary["update"] != 1 {
			t.Errorf("preview of a rollout: want one update, got %v", preview.ChangeSummary)
		}
		// ...and an `up` with its credentials changes nothing.
		before := e2eTheDeployment(ctx, t, admin)
		output.Reset()
		if _, err := stack.Up(ctx, optup.ProgressStreams(&output), optup.ErrorProgressStreams(&output)); err == nil {
			t.Errorf("the preview identity's up succeeded:\n%s", output.String())
		} else if !strings.Contains(output.String()+err.Error(), "forbidden") {
			t.Errorf("the preview identity's up failed, but not as forbidden: %v\n%s", err, output.String())
		}
		if after := e2eTheDeployment(ctx, t, admin); after.Generation != before.Generation || after.Spec.Template.Spec.Containers[0].Image != e2eRolloutImage {
			t.Errorf("the preview identity changed the Deployment: generation %d -> %d, image %s", before.Generation, after.Generation, after.Spec.Template.Spec.Containers[0].Image)
		}
		preview2 := e2eClientAs(t, local, e2ePreviewUser)
		e2eAllowed(t, "get the Deployment in "+e2eNamespace, func() error {
			_, err := preview2.AppsV1().Deployments(e2eNamespace).Get(ctx, "planet-classifier", metav1.GetOptions{})
			return err
		})
		e2eForbidden(t, "preview", "patch the Deployment", func() error {
			_, err := preview2.AppsV1().Deployments(e2eNamespace).Patch(ctx, "planet-classifier", types.MergePatchType,
				[]byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{})
			return err
		})
		e2eForbidden(t, "preview", "delete the Service", func() error {
			return preview2.CoreV1().Services(e2eNamespace).Delete(ctx, "planet-classifier", metav1.DeleteOptions{})
		})
		for what, call := range e2eForbiddenToDeploy(ctx, preview2, admin, t) {
			e2eForbidden(t, "preview", what, call)
		}
		// The engine records the failed update's inputs in the state (the
		// file backend here is writable by everyone; a real preview
		// identity cannot write the state bucket at all), so the admin's
		// next `up` with the deployed model's config applies the
		// Deployment again: to the cluster, that is nothing.
		if err := stack.SetConfig(ctx, "mlops:image", auto.ConfigValue{Value: e2eRolloutImage}); err != nil {
			t.Fatal(err)
		}
		actAs("admin")
		fixture.Up(ctx, t, stack)
		if after := e2eTheDeployment(ctx, t, admin); after.Generation != before.Generation || after.Spec.Template.Spec.Containers[0].Image != e2eRolloutImage {
			t.Errorf("the admin's up after the preview identity's attempt changed the Deployment: generation %d -> %d, image %s", before.Generation, after.Generation, after.Spec.Template.Spec.Containers[0].Image)
		}
		e2ePreviewNoChanges(ctx, t, stack, "the admin's preview after the admin's up")
	})

	t.Run("5_a_failing_rollout_shows_the_Deployment's_warning_events_in_the_deploy_identity's_up", func(t *testing.T) {
		// A rollout whose new ReplicaSet cannot be created (an object
		// count quota, as an admin may set): the deployment controller
		// records a Warning event on the Deployment, which the provider's
		// event aggregator (pulumi-kubernetes await/watchers.go) prints
		// while it waits, if its identity may list and watch Events.
		sets, err := admin.AppsV1().ReplicaSets(e2eNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "no-more-replicasets"}, Spec: corev1.ResourceQuotaSpec{
			Hard: corev1.ResourceList{"count/replicasets.apps": *resource.NewQuantity(int64(len(sets.Items)), resource.DecimalSI)},
		}}
		if _, err := admin.CoreV1().ResourceQuotas(e2eNamespace).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := admin.CoreV1().ResourceQuotas(e2eNamespace).Delete(context.WithoutCancel(ctx), quota.Name, metav1.DeleteOptions{}); err != nil {
				t.Errorf("deleting the quota: %v", err)
			}
		}()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
			q, err := admin.CoreV1().ResourceQuotas(e2eNamespace).Get(ctx, quota.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, synced := q.Status.Used["count/replicasets.apps"]; synced {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the quota's usage was not computed within 60s: %+v", q.Status)
			}
		}

		actAs("deploy")
		// An image no earlier ReplicaSet ran: the rollout needs a new one.
		newImage := "registry.local/planets/model@sha256:" + strings.Repeat("5e", 32)
		for key, value := range map[string]string{"mlops:image": newImage, "mlops:progressDeadlineSeconds": "20"} {
			if err := stack.SetConfig(ctx, key, auto.ConfigValue{Value: value}); err != nil {
				t.Fatal(err)
			}
		}
		var output bytes.Buffer
		_, err = stack.Up(ctx, optup.ProgressStreams(&output), optup.ErrorProgressStreams(&output))
		if err == nil {
			t.Fatalf("the rollout past the quota succeeded:\n%s", output.String())
		}
		// The aggregator prints "<reason>: <message>". The up's error
		// itself says only that the Deployment timed out waiting to be
		// Ready: without Events the cause is nowhere in the output.
		const event = "ReplicaSetCreateError: Failed to create new replica set"
		if line := e2eLineContaining(output.String(), event); line == "" || !strings.Contains(line, "exceeded quota") {
			t.Errorf("the deploy identity's failed up does not show the Deployment's warning event (%s ...: exceeded quota):\n%s", event, output.String())
		} else {
			t.Logf("PROOF the deploy identity's up shows the Deployment's warning event: %s", strings.TrimSpace(line))
		}
		// Whatever the event says, the identity itself met no 403.
		if strings.Contains(output.String(), `"`+e2eDeployUser+`" cannot`) {
			t.Errorf("the deploy identity's up met a 403:\n%s", output.String())
		}
	})
}

// e2ePrivilegedPodSpec is what Pod Security's restricted (and baseline)
// level refuses: a privileged container with the node's root file system.
func e2ePrivilegedPodSpec() corev1.PodSpec {
	privileged := true
	return corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "root", Image: e2eImage,
			SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
			VolumeMounts:    []corev1.VolumeMount{{Name: "host", MountPath: "/host"}},
		}},
		Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
	}
}

// e2eForbiddenToDeploy are requests neither CI identity may make: Secrets
// anywhere, kube-system, exec into the model's pods, anything created
// outside the namespace, the namespace deleted, RBAC written.
func e2eForbiddenToDeploy(ctx context.Context, as, admin kubernetes.Interface, t *testing.T) map[string]func() error {
	pods, err := admin.CoreV1().Pods(e2eNamespace).List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("no model pods to try exec on: %v", err)
	}
	pod := pods.Items[0].Name
	configMap := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}
	return map[string]func() error{
		"read a Secret in kube-system": func() error {
			_, err := as.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
			return err
		},
		"read Secrets in the model's namespace": func() error {
			_, err := as.CoreV1().Secrets(e2eNamespace).List(ctx, metav1.ListOptions{})
			return err
		},
		"exec into a model pod": func() error {
			return as.CoreV1().RESTClient().Post().Namespace(e2eNamespace).Resource("pods").Name(pod).SubResource("exec").
				Param("command", "true").Param("container", "model-server").Param("stdout", "true").Do(ctx).Error()
		},
		"create a ConfigMap in default": func() error {
			_, err := as.CoreV1().ConfigMaps("default").Create(ctx, configMap, metav1.CreateOptions{})
			return err
		},
		"create a Deployment in kube-system": func() error {
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}, Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: e2eImage}}}},
			}}
			_, err := as.AppsV1().Deployments("kube-system").Create(ctx, d, metav1.CreateOptions{})
			return err
		},
		"create a Namespace": func() error {
			_, err := as.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}, metav1.CreateOptions{})
			return err
		},
		"create a ConfigMap in the model's namespace (a kind the program does not manage)": func() error {
			_, err := as.CoreV1().ConfigMaps(e2eNamespace).Create(ctx, configMap, metav1.CreateOptions{})
			return err
		},
		"delete the model's Namespace": func() error {
			return as.CoreV1().Namespaces().Delete(ctx, e2eNamespace, metav1.DeleteOptions{})
		},
		"bind itself a Role": func() error {
			b := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "intruder"},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "admin"},
				Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: e2eDeployUser}}}
			_, err := as.RbacV1().RoleBindings(e2eNamespace).Create(ctx, b, metav1.CreateOptions{})
			return err
		},
		"read another namespace's objects": func() error {
			_, err := as.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
			return err
		},
	}
}

func e2eForbidden(t *testing.T, who, what string, call func() error) {
	t.Helper()
	if err := call(); !apierrors.IsForbidden(err) {
		t.Errorf("the %s identity may %s: got %v, want 403 Forbidden", who, what, err)
	}
}

func e2eAllowed(t *testing.T, what string, call func() error) {
	t.Helper()
	if err := call(); err != nil {
		t.Fatalf("%s (must be allowed, or the 403s prove nothing): %v", what, err)
	}
}

// e2eWithoutKubeconfig is config with no mlops:kubeconfig: the provider
// then uses the ambient KUBECONFIG, which each step points at the identity
// it acts as.
func e2eWithoutKubeconfig(config map[string]auto.ConfigValue) map[string]auto.ConfigValue {
	delete(config, "mlops:kubeconfig")
	return config
}

// e2eKubeconfigAs writes the cluster's kubeconfig acting as user ("" is
// the admin itself) and returns its path.
func e2eKubeconfigAs(t *testing.T, dir string, local *cluster.Cluster, user string) string {
	t.Helper()
	config, err := clientcmd.Load(local.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		config.AuthInfos[cluster.ContextName].Impersonate = user
	}
	name := "admin"
	if user != "" {
		name = strings.SplitN(user, "@", 2)[0]
	}
	path := filepath.Join(dir, "kubeconfig-"+name)
	if err := clientcmd.WriteToFile(*config, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// e2eClientAs is a client of the cluster acting as user.
func e2eClientAs(t *testing.T, local *cluster.Cluster, user string) kubernetes.Interface {
	t.Helper()
	config := local.RESTConfig()
	config.Impersonate = rest.ImpersonationConfig{UserName: user}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// e2eStateFiles returns the contents of every file of the file:// backend
// (checkpoints, their backups and the update history).
func e2eStateFiles(t *testing.T, env *pulumienv.Env) map[string][]byte {
	t.Helper()
	root := env.StateDir()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, entry os.DirEntry, err error) error {
		if err != nil || entry.IsDir() {
			return err
		}
		content, err := os.ReadFile(path)
		files[path] = content
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestE2EStateHoldsNoCredentialInPlainText: the kubernetes target's
// credentials (the kubeconfig's bearer token, a registry password) are
// secrets, and the real engine's state files, every one of them, hold
// them only encrypted.
func TestE2EStateHoldsNoCredentialInPlainText(t *testing.T) {
	pulumiEnv := fixture.Pulumi(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	local := fixture.Cluster(ctx, t, cluster.Options{Nodes: 1})
	config, err := clientcmd.Load(local.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	token := config.AuthInfos[cluster.ContextName].Token
	const registryPassword = "e2e-registry-password-4f1c9a"
	if len(token) < 16 {
		t.Fatalf("the cluster's kubeconfig has no bearer token to look for (%q)", token)
	}
	modelDir := e2eCopyModel(t, pulumiEnv.Dir)
	stack := e2eStack(ctx, t, pulumiEnv, pulumienv.KubernetesTarget(local, e2eImage, modelDir, "ClusterIP"), map[string]auto.ConfigValue{
		"mlops:registry":         {Value: "registry.local/planets"},
		"mlops:registryUsername": {Value: "robot"},
		"mlops:registryPassword": {Value: registryPassword, Secret: true},
	})
	fixture.Up(ctx, t, stack)
	fixture.Up(ctx, t, stack) // a second checkpoint, and a backup of the first

	files := e2eStateFiles(t, pulumiEnv)
	var checkpoints int
	for path, content := range files {
		for what, secret := range map[string]string{"the kubeconfig's bearer token": token, "the registry password": registryPassword} {
			if bytes.Contains(content, []byte(secret)) {
				t.Errorf("%s holds %s in plain text", path, what)
			}
		}
		if strings.Contains(path, string(filepath.Separator)+"stacks"+string(filepath.Separator)) && strings.HasSuffix(path, ".json") {
			checkpoints++
		}
	}
	if checkpoints == 0 {
		t.Fatalf("no checkpoint among the state files %v", keys(files))
	}
	// The kubeconfig is in the state, as a secret: the check above looked
	// at where it is.
	exported, err := stack.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var deployment struct {
		Resources []struct {
			Type   string         `json:"type"`
			Inputs map[string]any `json:"inputs"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(exported.Deployment, &deployment); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range deployment.Resources {
		if r.Type == "pulumi:providers:kubernetes" {
			// Marked secret (the export decrypts it, so its ciphertext
			// shows as plaintext here; the state files were read above).
			secret, _ := r.Inputs["kubeconfig"].(map[string]any)
			found = found || secret[sig.Key] == sig.Secret
		}
	}
	if !found {
		t.Errorf("the state holds no encrypted kubeconfig for the provider: the test would prove nothing")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
