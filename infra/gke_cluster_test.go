package infra

import (
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

func declareCluster(t *testing.T, args GKEClusterArgs) (*mocktest.Mocks, string) {
	t.Helper()
	var kubeconfig string
	mocks := declare(t, func(ctx *pulumi.Context) error {
		repo, err := testRepository(ctx)
		if err != nil {
			return err
		}
		cluster, err := NewGKECluster(ctx, "cluster", withRepository(args, repo))
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
	mocks, _ := declareCluster(t, devCluster)
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
	mocks, kubeconfig := declareCluster(t, devCluster)
	provider := mocks.One(t, "pulumi:providers:kubernetes")
	if got, want := provider.Str("clusterIdentifier"), mocktest.ClusterDNSEndpoint("mlops-kubernetes", "europe-west6-a"); got != want {
		t.Errorf("clusterIdentifier = %q, want the cluster's DNS endpoint %q", got, want)
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
	args := devCluster
	args.NodeAutoscaling = &NodeAutoscaling{MinNodes: 1, MaxNodes: 5}
	mocks, _ := declareCluster(t, args)
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
	args := devCluster
	args.Autopilot = true
	mocks, _ := declareCluster(t, args)
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
	// GKE reports a nodeConfig for Autopilot's own nodes: never a
	// replacement (terraform-provider-google #23550), as for Standard.
	if cluster.Input("nodeConfig").IsObject() || !slices.Equal(cluster.IgnoreChanges, []string{"nodeConfig"}) {
		t.Errorf("autopilot declares nodeConfig %v, ignoreChanges %q; want none, with exactly [nodeConfig] ignored", cluster.Input("nodeConfig"), cluster.IgnoreChanges)
	}
}

// clusterAs declares the dev cluster as GKE reports it: with this CA,
// endpoint address and DNS endpoint. It returns the provider's
// clusterIdentifier input ("" when there is none) and the kubeconfig.
func clusterAs(t *testing.T, args GKEClusterArgs, ca, ip, dns string) (identifier, kubeconfig string) {
	t.Helper()
	mocks := &mocktest.Mocks{Reported: map[string]map[string]any{
		mocktest.Key("gcp:container/cluster:Cluster", "cluster"): {
			"endpoint": ip, "masterAuth": map[string]any{"clusterCaCertificate": ca},
			"controlPlaneEndpointsConfig": map[string]any{"dnsEndpointConfig": map[string]any{"endpoint": dns}},
		},
	}}
	err := mocks.Run(func(ctx *pulumi.Context) error {
		repo, err := testRepository(ctx)
		if err != nil {
			return err
		}
		cluster, err := NewGKECluster(ctx, "cluster", withRepository(args, repo))
		if err != nil {
			return err
		}
		kubeconfig = resolve[string](t, cluster.Kubeconfig)
		return nil
	}, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	provider := mocks.One(t, "pulumi:providers:kubernetes")
	if v := provider.Input("clusterIdentifier"); !v.IsNull() {
		identifier = v.StringValue()
	}
	return identifier, kubeconfig
}

// TestClusterIdentifierSurvivesRotationsAndFollowsANewCluster: a credential
// rotation gives the cluster a new CA, an IP rotation a new endpoint
// address; neither is a new cluster, so the identifier stays, and the
// Kubernetes provider (DiffConfig: a changed identifier value replaces, the
// same one never does, whatever the kubeconfig) updates in place and
// replaces none of the workloads. A cluster re-created under the same name
// has a new DNS endpoint: the identifier changes, the provider is replaced,
// and the workloads with it (they are created again in the new cluster).
// The real provider's DiffConfig is exercised in
// TestE2EClusterIdentifierMigration.
func TestClusterIdentifierSurvivesRotationsAndFollowsANewCluster(t *testing.T) {
	const (
		caBefore = "Y2VydGlmaWNhdGUgb25l"
		caAfter  = "Y2VydGlmaWNhdGUgdHdv"
		ipBefore = "34.65.10.20"
		ipAfter  = "34.65.10.99"
	)
	dns := mocktest.ClusterDNSEndpoint("mlops-kubernetes", "europe-west6-a")
	before, kubeconfigBefore := clusterAs(t, devCluster, caBefore, ipBefore, dns)
	if before != dns {
		t.Fatalf("identifier %q, want the DNS endpoint %q", before, dns)
	}
	rotated, kubeconfigRotated := clusterAs(t, devCluster, caAfter, ipAfter, dns)
	if rotated != before {
		t.Errorf("rotated CA and IP, same cluster: identifier %q -> %q, which replaces the provider and every workload", before, rotated)
	}
	if kubeconfigRotated == kubeconfigBefore || !strings.Contains(kubeconfigRotated, ipAfter) {
		t.Errorf("the kubeconfig does not follow the rotation (new address %s)", ipAfter)
	}
	recreated, _ := clusterAs(t, devCluster, caAfter, ipBefore, "gke-0123456789abcdef0123456789abcdef-"+mocktest.ProjectNumber+".europe-west6-a.gke.goog")
	if recreated == before {
		t.Errorf("a re-created cluster keeps the identifier %q: its workloads would stay in the state only", before)
	}
}

// TestDetachClusterIdentifierDeclaresNone: the first `up` of the move from
// the CA-based identifier removes it (the provider updates in place: it
// only replaces on a changed value), the second adds the DNS endpoint.
func TestDetachClusterIdentifierDeclaresNone(t *testing.T) {
	args := devCluster
	args.DetachClusterIdentifier = true
	identifier, kubeconfig := clusterAs(t, args, mocktest.ClusterCA, mocktest.ClusterIP, mocktest.ClusterDNSEndpoint("mlops-kubernetes", "europe-west6-a"))
	if identifier != "" {
		t.Errorf("detached, yet clusterIdentifier %q", identifier)
	}
	if !strings.Contains(kubeconfig, mocktest.ClusterIP) {
		t.Errorf("kubeconfig without the cluster's address:\n%s", kubeconfig)
	}
}

// A cluster that reports no DNS endpoint (a state written before the
// provider read it) stops the program with what to do, rather than naming
// every cluster of that name alike.
func TestClusterIdentifierNeedsTheDNSEndpoint(t *testing.T) {
	mocks := &mocktest.Mocks{Reported: map[string]map[string]any{
		mocktest.Key("gcp:container/cluster:Cluster", "cluster"): {"controlPlaneEndpointsConfig": map[string]any{}},
	}}
	err := mocks.Run(func(ctx *pulumi.Context) error {
		repo, err := testRepository(ctx)
		if err != nil {
			return err
		}
		_, err = NewGKECluster(ctx, "cluster", withRepository(devCluster, repo))
		return err
	}, map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "reports no DNS endpoint") || !strings.Contains(err.Error(), "pulumi refresh") {
		t.Errorf("error %v, want one saying the DNS endpoint is missing and to refresh", err)
	}
}
