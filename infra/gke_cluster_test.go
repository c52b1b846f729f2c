package infra

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/planets-mlops/deploy/internal/config"
	"github.com/planets-mlops/deploy/internal/mocktest"
)

func declareCluster(t *testing.T, gcp config.GCP) (*mocktest.Mocks, string) {
	t.Helper()
	var kubeconfig string
	mocks := declare(t, func(ctx *pulumi.Context) error {
		repo, err := testRepository(ctx)
		if err != nil {
			return err
		}
		cluster, err := NewGKECluster(ctx, "cluster", &GKEClusterArgs{GCP: gcp, Repository: repo})
		if err != nil {
			return err
		}
		if !pulumi.IsSecret(cluster.Kubeconfig) {
			t.Errorf("the kubeconfig output is not a secret")
		}
		kubeconfig = resolve[string](t, cluster.Kubeconfig)
		return nil
	})
	return mocks, kubeconfig
}

func TestGKEClusterIsZonalWithAManagedPoolOfMinimalNodes(t *testing.T) {
	mocks, _ := declareCluster(t, devGCP)
	cluster := mocks.One(t, "gcp:container/cluster:Cluster")
	for path, want := range map[string]string{
		"name": "mlops-kubernetes", "location": "europe-west6-a", "project": testProject,
		"releaseChannel.channel":              "REGULAR",
		"workloadIdentityConfig.workloadPool": testProject + ".svc.id.goog",
		"nodeConfig.serviceAccount":           "mlops-kubernetes-nodes@" + testProject + ".iam.gserviceaccount.com",
	} {
		if got := cluster.Str(path); got != want {
			t.Errorf("cluster %s = %q, want %q", path, got, want)
		}
	}
	if !cluster.Input("removeDefaultNodePool").BoolValue() || cluster.Input("deletionProtection").BoolValue() {
		t.Errorf("removeDefaultNodePool %v, deletionProtection %v", cluster.Input("removeDefaultNodePool"), cluster.Input("deletionProtection"))
	}
	if cluster.Input("enableAutopilot").IsBool() {
		t.Errorf("a Standard cluster sets enableAutopilot")
	}
	// GKE reports no cluster-level nodeConfig once the default pool is
	// gone, and its fields are ForceNew: the next preview must not see a
	// difference there, or it plans to replace the cluster.
	if cluster.Input("nodeConfig").IsObject() && !slices.Equal(cluster.IgnoreChanges, []string{"nodeConfig"}) {
		t.Errorf("the cluster declares nodeConfig (dropped on read-back after removeDefaultNodePool) with ignoreChanges %q, want exactly [nodeConfig]", cluster.IgnoreChanges)
	}
	if !cluster.DeleteBeforeReplace {
		t.Errorf("a replacement under the same name would be created before the old cluster is deleted (409)")
	}

	pool := mocks.One(t, "gcp:container/nodePool:NodePool")
	for path, want := range map[string]string{
		"location": "europe-west6-a", "cluster": "mlops-kubernetes",
		"nodeConfig.machineType":                 "e2-standard-2",
		"nodeConfig.serviceAccount":              "mlops-kubernetes-nodes@" + testProject + ".iam.gserviceaccount.com",
		"nodeConfig.workloadMetadataConfig.mode": "GKE_METADATA",
	} {
		if got := pool.Str(path); got != want {
			t.Errorf("node pool %s = %q, want %q", path, got, want)
		}
	}
	if n := pool.Input("nodeCount").NumberValue(); n != 2 {
		t.Errorf("node count %v", n)
	}
	if pool.Input("autoscaling").IsObject() || len(pool.IgnoreChanges) > 0 {
		t.Errorf("without nodeAutoscaling the pool declares autoscaling %v, ignoreChanges %q", pool.Input("autoscaling"), pool.IgnoreChanges)
	}
	if !pool.Input("management.autoRepair").BoolValue() || !pool.Input("management.autoUpgrade").BoolValue() {
		t.Errorf("node pool is not auto-repaired and auto-upgraded")
	}

	roles := map[string]string{}
	for _, r := range mocks.Resources() {
		if r.Str("role") != "" {
			roles[r.Str("role")] = r.Str("member")
		}
	}
	nodes := "serviceAccount:mlops-kubernetes-nodes@" + testProject + ".iam.gserviceaccount.com"
	if len(roles) != 2 || roles["roles/container.defaultNodeServiceAccount"] != nodes || roles["roles/artifactregistry.reader"] != nodes {
		t.Errorf("node roles %v", roles)
	}
}

func TestGKEClusterProviderIsNotReplacedOnUnknownKubeconfig(t *testing.T) {
	mocks, kubeconfig := declareCluster(t, devGCP)
	provider := mocks.One(t, "pulumi:providers:kubernetes")
	sum := sha256.Sum256([]byte(mocktest.ClusterCA))
	if got, want := provider.Str("clusterIdentifier"), fmt.Sprintf("gke_%s_europe-west6-a_mlops-kubernetes_%x", testProject, sum[:8]); got != want {
		t.Errorf("clusterIdentifier = %q, want %q", got, want)
	}
	if !provider.IsSecret("kubeconfig") || provider.Str("kubeconfig") != kubeconfig {
		t.Errorf("the provider does not get the secret kubeconfig")
	}

	parsed, err := clientcmd.Load([]byte(kubeconfig))
	if err != nil {
		t.Fatalf("kubeconfig does not parse: %v\n%s", err, kubeconfig)
	}
	name := parsed.CurrentContext
	if server := parsed.Clusters[name].Server; server != "https://"+mocktest.ClusterIP {
		t.Errorf("server %q", server)
	}
	if !strings.Contains(string(parsed.Clusters[name].CertificateAuthorityData), "BEGIN CERTIFICATE") {
		t.Errorf("no CA certificate")
	}
	user := parsed.AuthInfos[name]
	if user.Exec == nil || user.Exec.Command != "gke-gcloud-auth-plugin" || !user.Exec.ProvideClusterInfo {
		t.Errorf("user does not authenticate with gke-gcloud-auth-plugin: %+v", user)
	}
	if user.Token != "" || user.TokenFile != "" || len(user.ClientKeyData) > 0 || strings.Contains(kubeconfig, mocktest.AccessToken) {
		t.Errorf("the kubeconfig holds a credential")
	}
}

func TestGKENodeAutoscalingLeavesThePoolSizeToTheAutoscaler(t *testing.T) {
	gcp := devGCP
	gcp.NodeAutoscaling, gcp.MinNodes, gcp.MaxNodes = true, 1, 5
	mocks, _ := declareCluster(t, gcp)
	pool := mocks.One(t, "gcp:container/nodePool:NodePool")
	if lo, hi := pool.Input("autoscaling.minNodeCount").NumberValue(), pool.Input("autoscaling.maxNodeCount").NumberValue(); lo != 1 || hi != 5 {
		t.Errorf("node pool autoscaling %v..%v, want 1..5", lo, hi)
	}
	// nodeCount sizes a new pool only; an `up` must not set it back.
	if n := pool.Input("nodeCount").NumberValue(); n != 2 || !slices.Equal(pool.IgnoreChanges, []string{"nodeCount"}) {
		t.Errorf("node count %v with ignoreChanges %q, want 2 with exactly [nodeCount]", n, pool.IgnoreChanges)
	}
}

func TestGKEAutopilotIsRegionalWithoutANodePool(t *testing.T) {
	gcp := devGCP
	gcp.Autopilot = true
	mocks, _ := declareCluster(t, gcp)
	cluster := mocks.One(t, "gcp:container/cluster:Cluster")
	if !cluster.Input("enableAutopilot").BoolValue() || cluster.Str("location") != "europe-west6" {
		t.Errorf("autopilot %v in %q", cluster.Input("enableAutopilot"), cluster.Str("location"))
	}
	if sa := cluster.Str("clusterAutoscaling.autoProvisioningDefaults.serviceAccount"); sa != "mlops-kubernetes-nodes@"+testProject+".iam.gserviceaccount.com" {
		t.Errorf("autopilot nodes run as %q", sa)
	}
	if n := len(mocks.OfType("gcp:container/nodePool:NodePool")); n != 0 {
		t.Errorf("%d node pools with autopilot", n)
	}
	if cluster.Input("nodeConfig").IsObject() || len(cluster.IgnoreChanges) > 0 {
		t.Errorf("autopilot declares nodeConfig %v, ignoreChanges %q", cluster.Input("nodeConfig"), cluster.IgnoreChanges)
	}
}

// A cluster replaced under the same name keeps project, location and name;
// only its CA is new. The identifier must differ, so that the provider and
// the workloads are replaced with it instead of staying in the state only.
func TestClusterIdentifierChangesWithThePhysicalCluster(t *testing.T) {
	const name = "gke_" + testProject + "_europe-west6-a_mlops-kubernetes"
	first := clusterIdentifier(name, "Y2VydGlmaWNhdGUgb25l")
	if again := clusterIdentifier(name, "Y2VydGlmaWNhdGUgb25l"); again != first {
		t.Errorf("the same cluster gets %q and %q", first, again)
	}
	if replaced := clusterIdentifier(name, "Y2VydGlmaWNhdGUgdHdv"); replaced == first {
		t.Errorf("a new cluster under the same name keeps the identifier %q", first)
	}
	if !strings.HasPrefix(first, name+"_") {
		t.Errorf("identifier %q does not name the cluster", first)
	}
}
