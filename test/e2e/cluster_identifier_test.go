package e2e

// The move from the CA-based clusterIdentifier to the DNS endpoint one
// (infra.ClusterIdentifier, detachClusterIdentifier), on the real Pulumi CLI
// and the real Kubernetes provider against a real API server: what the
// provider's DiffConfig does with an identifier that is changed, removed,
// added or kept while the kubeconfig changes. GKE itself cannot run here, so
// the provider is declared as infra.GKECluster declares it, with the
// identifier of each step.

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	k8s "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	pcorev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	pmetav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"

	"github.com/planets-mlops/deploy/internal/localcloud/cluster"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
)

func TestE2EClusterIdentifierMigration(t *testing.T) {
	pulumiEnv := fixture.Pulumi(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	local := fixture.Cluster(ctx, t, cluster.Options{Nodes: 1})
	kube, err := kubernetes.NewForConfig(local.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	const (
		caHashIdentifier = "gke_planets-mlops-dev_europe-west6-a_mlops-kubernetes_0123456789abcdef" // before
		dnsIdentifier    = "gke-4f1c9a0123456789abcdef0123456789-123456789012.europe-west6-a.gke.goog"
		recreatedDNS     = "gke-77aa550123456789abcdef0123456789-123456789012.europe-west6-a.gke.goog"
		namespace        = "identifier-migration"
	)
	// The same API server under another address: what an IP rotation does
	// to the kubeconfig (the serving certificate names localhost too).
	rotated := func() string {
		config, err := clientcmd.Load(local.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		c := config.Clusters[cluster.ContextName]
		c.Server = strings.Replace(c.Server, "127.0.0.1", "localhost", 1)
		out, err := clientcmd.Write(*config)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}()

	// step is what the program declares: the identifier (nil: none, as
	// with detachClusterIdentifier) and the kubeconfig.
	var identifier *string
	kubeconfig := string(local.Kubeconfig)
	program := func(ctx *pulumi.Context) error {
		args := &k8s.ProviderArgs{Kubeconfig: pulumi.ToSecret(pulumi.String(kubeconfig)).(pulumi.StringOutput)}
		if identifier != nil {
			args.ClusterIdentifier = pulumi.String(*identifier)
		}
		provider, err := k8s.NewProvider(ctx, "cluster-k8s", args)
		if err != nil {
			return err
		}
		ns, err := pcorev1.NewNamespace(ctx, "namespace", &pcorev1.NamespaceArgs{
			Metadata: &pmetav1.ObjectMetaArgs{Name: pulumi.String(namespace)},
		}, pulumi.Provider(provider))
		if err != nil {
			return err
		}
		_, err = pcorev1.NewConfigMap(ctx, "workload", &pcorev1.ConfigMapArgs{
			Metadata: &pmetav1.ObjectMetaArgs{Name: pulumi.String("workload"), Namespace: ns.Metadata.Name()},
			Data:     pulumi.StringMap{"model": pulumi.String("planets")},
		}, pulumi.Provider(provider))
		return err
	}
	stack := fixture.ProjectStack(ctx, t, pulumiEnv, "identifier", fixture.Project("identifier-migration"), program, nil)
	uids := func() string {
		ns, err := kube.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm, err := kube.CoreV1().ConfigMaps(namespace).Get(ctx, "workload", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(ns.UID) + "/" + string(cm.UID)
	}
	set := func(id *string, config string) { identifier, kubeconfig = id, config }
	str := func(s string) *string { return &s }
	// planned returns the preview's operations on the two workloads.
	planned := func(t *testing.T) map[string]int {
		t.Helper()
		var output bytes.Buffer
		result, err := stack.Preview(ctx, optpreview.ProgressStreams(&output), optpreview.ErrorProgressStreams(&output))
		if err != nil {
			t.Fatalf("preview: %v\n%s", err, output.String())
		}
		ops := map[string]int{}
		for op, n := range result.ChangeSummary {
			ops[string(op)] = n
		}
		return ops
	}
	// upKeepsTheWorkloads runs `up` and fails unless the workloads are
	// the same objects afterwards and nothing but the provider changed.
	upKeepsTheWorkloads := func(t *testing.T, what string) {
		t.Helper()
		before := uids()
		result := fixture.Up(ctx, t, stack)
		for op, n := range e2eChanges(result.Summary.ResourceChanges) {
			if op != "same" && !(op == "update" && n == 1) {
				t.Errorf("%s: %d %s, want the provider updated at most and the workloads the same (%v)", what, n, op, e2eChanges(result.Summary.ResourceChanges))
			}
		}
		if after := uids(); after != before {
			t.Errorf("%s: the Namespace and ConfigMap were re-created (uids %s -> %s)", what, before, after)
		}
	}

	set(str(caHashIdentifier), string(local.Kubeconfig))
	fixture.Up(ctx, t, stack)

	ok := t.Run("1_changing_the_identifier_in_one_step_would_replace_the_workloads", func(t *testing.T) {
		set(str(dnsIdentifier), string(local.Kubeconfig))
		if ops := planned(t); ops["replace"] < 2 {
			t.Errorf("a changed identifier value: planned %v, want the provider and both workloads replaced (why the move takes two steps)", ops)
		}
	})
	ok = ok && t.Run("2_detach_removes_the_identifier_in_place", func(t *testing.T) {
		set(nil, string(local.Kubeconfig))
		upKeepsTheWorkloads(t, "up without the identifier")
	})
	ok = ok && t.Run("3_attach_adds_the_DNS_identifier_in_place", func(t *testing.T) {
		set(str(dnsIdentifier), string(local.Kubeconfig))
		upKeepsTheWorkloads(t, "up with the DNS endpoint identifier")
		e2eAssertOnlySame(t, "preview after the move", planned(t))
	})
	if !ok {
		t.FailNow()
	}
	t.Run("4_a_rotation_keeps_the_workloads", func(t *testing.T) {
		set(str(dnsIdentifier), rotated)
		upKeepsTheWorkloads(t, "up after the endpoint changed, same identifier")
	})
	t.Run("5_without_an_identifier_a_rotation_would_replace_them", func(t *testing.T) {
		set(nil, string(local.Kubeconfig)) // detached, and the address changes back
		if ops := planned(t); ops["replace"] < 2 {
			t.Errorf("no identifier and a changed kubeconfig: planned %v, want the workloads replaced (why the identifier is needed)", ops)
		}
	})
	t.Run("6_a_re-created_cluster_takes_the_workloads_with_it", func(t *testing.T) {
		set(str(recreatedDNS), rotated)
		if ops := planned(t); ops["replace"] < 2 {
			t.Errorf("a new DNS endpoint: planned %v, want the provider and both workloads replaced", ops)
		}
	})
}
