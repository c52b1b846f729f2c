package program

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	k8scorev1 "k8s.io/api/core/v1"

	"github.com/planets-mlops/deploy/infra"
	"github.com/planets-mlops/deploy/internal/config"
	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

// The mappings below are each held to a configuration whose every setting
// has a value of its own, so a setting mapped to the wrong input, or not at
// all, shows; TestEverySettingReachesItsResource then runs them through
// the program and the components.

func TestGKEClusterArgsAreTheGCPSettings(t *testing.T) {
	g := config.GCP{
		Project: testProject, Region: "europe-west1", Zone: "europe-west1-c", ClusterName: "planets-prod",
		Autopilot: true, MachineType: "e2-standard-4", NodeCount: 3, ReleaseChannel: "STABLE",
		DeletionProtection: true, RepositoryID: "models", KeepImages: 4,
		NodeAutoscaling: true, MinNodes: 2, MaxNodes: 7,
		DetachClusterIdentifier: true, LoadBalancerAddress: "endpoint",
	}
	repository := &artifactregistry.Repository{}
	got := gkeClusterArgs(g, repository)
	want := &infra.GKEClusterArgs{
		Project: testProject, ClusterName: "planets-prod", Zone: "europe-west1-c", Region: "europe-west1",
		Autopilot: true, MachineType: "e2-standard-4", NodeCount: 3,
		NodeAutoscaling: &infra.NodeAutoscaling{MinNodes: 2, MaxNodes: 7},
		ReleaseChannel:  "STABLE", DeletionProtection: true, DetachClusterIdentifier: true,
		Repository: repository,
	}
	if !reflect.DeepEqual(got, want) || got.Repository != repository {
		t.Errorf("gkeClusterArgs(%+v)\n = %+v, node autoscaling %+v\nwant %+v, node autoscaling %+v", g, got, got.NodeAutoscaling, want, want.NodeAutoscaling)
	}

	g.NodeAutoscaling = false
	if got := gkeClusterArgs(g, nil); got.NodeAutoscaling != nil {
		t.Errorf("nodeAutoscaling false, yet the pool autoscales: %+v", got.NodeAutoscaling)
	}
}

func TestCIIdentityArgsAreTheCISettings(t *testing.T) {
	c := config.CI{
		ServiceAccountID: "deployer-ci", PreviewServiceAccountID: "previewer-ci", Platform: config.CIGitLab,
		Repository: "data-science/planets", RepositoryID: "42", DefaultBranch: "release",
		GitLabURL: "https://gitlab.example.com", JSONKey: true, StateBucket: "planets-state",
	}
	repository := &artifactregistry.Repository{}
	got := ciIdentityArgs(testProject, c, repository)
	want := &infra.CIIdentityArgs{
		Project: testProject, ServiceAccountID: "deployer-ci", PreviewServiceAccountID: "previewer-ci",
		Platform: infra.CIGitLab, SourceRepository: "data-science/planets", SourceRepositoryID: "42",
		DefaultBranch: "release", GitLabURL: "https://gitlab.example.com", JSONKey: true, StateBucket: "planets-state",
		Repository: repository,
	}
	if !reflect.DeepEqual(got, want) || got.Repository != repository {
		t.Errorf("ciIdentityArgs(%+v)\n = %+v\nwant %+v", c, got, want)
	}
}

// Every mlops:ciPlatform is the platform of the same name in infra.
func TestCIPlatformsAreInfrasPlatforms(t *testing.T) {
	for from, to := range map[config.CIPlatform]infra.CIPlatform{
		config.CIGitHub: infra.CIGitHub,
		config.CIGitLab: infra.CIGitLab,
		config.CINone:   infra.CINone,
	} {
		if got := ciPlatform(from); got != to {
			t.Errorf("ciPlatform(%q) = %q, want %q", from, got, to)
		}
	}
}

// Every mlops:serviceType config accepts, spelled as Kubernetes spells it,
// is infra's Service type.
func TestServiceTypesAreInfrasServiceTypes(t *testing.T) {
	for from, to := range map[k8scorev1.ServiceType]infra.ServiceType{
		k8scorev1.ServiceTypeLoadBalancer: infra.ServiceLoadBalancer,
		k8scorev1.ServiceTypeNodePort:     infra.ServiceNodePort,
		k8scorev1.ServiceTypeClusterIP:    infra.ServiceClusterIP,
	} {
		if got := serviceType(string(from)); got != to {
			t.Errorf("serviceType(%q) = %q, want %q", from, got, to)
		}
	}
}

func TestModelServiceArgsAreTheServeSettings(t *testing.T) {
	s := config.Service{
		Namespace: "models", AppName: "classifier", Replicas: 4,
		Autoscaling: true, MinReplicas: 3, MaxReplicas: 9, TargetCPUUtilization: 60, ScaleDownStabilizationSeconds: 120,
		CPURequest: "500m", CPULimit: "2", MemoryRequest: "256Mi", MemoryLimit: "512Mi",
		Type: string(k8scorev1.ServiceTypeNodePort), Port: 9090, ProgressDeadlineSeconds: 300,
	}
	image, fingerprint, ip := pulumi.String("image@sha256:1"), pulumi.String("f00d"), pulumi.String("34.65.1.2")
	got := modelServiceArgs(s, image, fingerprint, ip)
	want := &infra.ModelServiceArgs{
		Namespace: "models", Name: "classifier", Replicas: 4,
		Autoscaling: &infra.Autoscaling{MinReplicas: 3, MaxReplicas: 9, TargetCPUUtilization: 60, ScaleDownStabilizationSeconds: 120},
		Resources:   infra.Resources{CPURequest: "500m", CPULimit: "2", MemoryRequest: "256Mi", MemoryLimit: "512Mi"},
		ServiceType: infra.ServiceNodePort, Port: 9090, ProgressDeadlineSeconds: 300,
		Image: image, Fingerprint: fingerprint, LoadBalancerIP: ip,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("modelServiceArgs(%+v)\n = %+v, autoscaling %+v\nwant %+v, autoscaling %+v", s, got, got.Autoscaling, want, want.Autoscaling)
	}

	s.Autoscaling = false
	if got := modelServiceArgs(s, image, fingerprint, nil); got.Autoscaling != nil || got.Replicas != 4 || got.LoadBalancerIP != nil {
		t.Errorf("autoscaling off: autoscaling %+v, replicas %d, loadBalancerIP %v; want none, 4, none", got.Autoscaling, got.Replicas, got.LoadBalancerIP)
	}
}

// TestEverySettingReachesItsResource runs the program with every setting of
// the cluster, CI's identity and the model service away from its default,
// and finds each in the inputs of the resource it is for.
func TestEverySettingReachesItsResource(t *testing.T) {
	w := newWorkspace(t, map[string]string{
		"mlops:zone": "europe-west6-b", "mlops:clusterName": "planets-prod", "mlops:machineType": "e2-standard-4",
		"mlops:nodeCount": "3", "mlops:nodeAutoscaling": "true", "mlops:minNodes": "2", "mlops:maxNodes": "7",
		"mlops:releaseChannel": "STABLE", "mlops:deletionProtection": "true", "mlops:detachClusterIdentifier": "true",

		"mlops:ciServiceAccountId": "deployer-ci", "mlops:ciPreviewServiceAccountId": "previewer-ci",
		"mlops:ciPlatform": "gitlab", "mlops:ciRepository": "data-science/planets", "mlops:ciRepositoryId": "42",
		"mlops:ciDefaultBranch": "release", "mlops:gitlabUrl": "https://gitlab.example.com", "mlops:stateBucket": "planets-state",

		"mlops:namespace": "models", "mlops:appName": "classifier", "mlops:replicas": "4",
		"mlops:autoscaling": "true", "mlops:minReplicas": "3", "mlops:maxReplicas": "9",
		"mlops:targetCPUUtilization": "60", "mlops:scaleDownStabilizationSeconds": "120",
		"mlops:cpuRequest": "500m", "mlops:cpuLimit": "2", "mlops:memoryRequest": "256Mi", "mlops:memoryLimit": "512Mi",
		"mlops:serviceType": "NodePort", "mlops:servicePort": "9090", "mlops:progressDeadlineSeconds": "300",
	})
	mocks, outputs := w.run(t)

	cluster := mocks.One(t, "gcp:container/cluster:Cluster")
	pool := mocks.One(t, "gcp:container/nodePool:NodePool")
	requireInputs(t, []input{
		{"cluster name", cluster.Str("name"), "planets-prod"},
		{"cluster location", cluster.Str("location"), "europe-west6-b"},
		{"release channel", cluster.Str("releaseChannel.channel"), "STABLE"},
		{"deletion protection", cluster.Input("deletionProtection").BoolValue(), true},
		{"nodes' account", cluster.Str("nodeConfig.serviceAccount"), "planets-prod-nodes@" + testProject + ".iam.gserviceaccount.com"},
		{"pool location", pool.Str("location"), "europe-west6-b"},
		{"machine type", pool.Str("nodeConfig.machineType"), "e2-standard-4"},
		{"node count", pool.Input("nodeCount").NumberValue(), 3.0},
		{"fewest nodes", pool.Input("autoscaling.minNodeCount").NumberValue(), 2.0},
		{"most nodes", pool.Input("autoscaling.maxNodeCount").NumberValue(), 7.0},
		{"provider without clusterIdentifier", mocks.One(t, "pulumi:providers:kubernetes").Input("clusterIdentifier").IsNull(), true},
	})

	var accounts []string
	for _, a := range mocks.OfType("gcp:serviceaccount/account:Account") {
		accounts = append(accounts, a.Str("accountId"))
	}
	slices.Sort(accounts)
	if want := []string{"deployer-ci", "planets-prod-nodes", "previewer-ci"}; !slices.Equal(accounts, want) {
		t.Errorf("service accounts %v, want %v", accounts, want)
	}
	provider := mocks.One(t, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
	if c := provider.Str("attributeCondition"); c != `assertion.project_id == "42" && assertion.project_path == "data-science/planets"` {
		t.Errorf("attribute condition %q", c)
	}
	if issuer, id := provider.Str("oidc.issuerUri"), provider.Str("workloadIdentityPoolProviderId"); issuer != "https://gitlab.example.com" || id != "gitlab" {
		t.Errorf("provider %q of issuer %q, want gitlab of https://gitlab.example.com", id, issuer)
	}
	deployer := "projects/" + testProject + "/serviceAccounts/deployer-ci@" + testProject + ".iam.gserviceaccount.com"
	var deployBinding string
	for _, b := range mocks.OfType("gcp:serviceaccount/iAMMember:IAMMember") {
		if b.Str("serviceAccountId") == deployer {
			deployBinding = b.Str("member")
		}
	}
	if !strings.HasSuffix(deployBinding, "/attribute.protected_branch/release") {
		t.Errorf("the deploy account is impersonated by %q, want the protected branch release", deployBinding)
	}
	var buckets []string
	for _, b := range mocks.OfType("gcp:storage/bucketIAMMember:BucketIAMMember") {
		buckets = append(buckets, b.Str("bucket"))
	}
	if !slices.Equal(buckets, []string{"planets-state", "planets-state"}) {
		t.Errorf("state grants on %v, want both accounts' on planets-state", buckets)
	}

	d := mocks.One(t, "kubernetes:apps/v1:Deployment")
	if r, ok := d.Input("spec").ObjectValue()["replicas"]; ok {
		t.Errorf("the Deployment sends spec.replicas = %v with autoscaling on", r)
	}
	container := mocktest.Resource{Inputs: d.Input("spec.template.spec.containers").ArrayValue()[0].ObjectValue()}
	hpa := mocks.One(t, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
	cpu := mocktest.Resource{Inputs: hpa.Input("spec.metrics").ArrayValue()[0].ObjectValue()}
	svc := mocks.One(t, "kubernetes:core/v1:Service")
	port := mocktest.Resource{Inputs: svc.Input("spec.ports").ArrayValue()[0].ObjectValue()}
	requireInputs(t, []input{
		{"namespace", mocks.One(t, "kubernetes:core/v1:Namespace").Str("metadata.name"), "models"},
		{"Deployment", d.Str("metadata.namespace") + "/" + d.Str("metadata.name"), "models/classifier"},
		{"progressDeadlineSeconds", d.Input("spec.progressDeadlineSeconds").NumberValue(), 300.0},
		{"cpu request", container.Str("resources.requests.cpu"), "500m"},
		{"cpu limit", container.Str("resources.limits.cpu"), "2"},
		{"memory request", container.Str("resources.requests.memory"), "256Mi"},
		{"memory limit", container.Str("resources.limits.memory"), "512Mi"},
		{"minReplicas", hpa.Input("spec.minReplicas").NumberValue(), 3.0},
		{"maxReplicas", hpa.Input("spec.maxReplicas").NumberValue(), 9.0},
		{"CPU target", cpu.Input("resource.target.averageUtilization").NumberValue(), 60.0},
		{"scale-down stabilization", hpa.Input("spec.behavior.scaleDown.stabilizationWindowSeconds").NumberValue(), 120.0},
		{"Service", svc.Str("metadata.namespace") + "/" + svc.Str("metadata.name"), "models/classifier"},
		{"Service type", svc.Str("spec.type"), string(k8scorev1.ServiceTypeNodePort)},
		{"Service port", port.Input("port").NumberValue(), 9090.0},
		{"endpoint", outputs["endpoint"], "http://classifier.models.svc.cluster.local:9090"},
	})
	if n := len(mocks.OfType("gcp:compute/address:Address")); n != 0 {
		t.Errorf("a NodePort Service got %d addresses", n)
	}
}

// An Autopilot stack's cluster is in the region, and CI without federation
// gets the JSON key it asked for.
func TestAutopilotAndJSONKeySettingsReachTheirResources(t *testing.T) {
	w := newWorkspace(t, map[string]string{
		// The zone stays europe-west6-a: Autopilot is regional.
		"mlops:autopilot": "true", "mlops:region": "europe-west1",
		// Autopilot gives at least 1 GiB per vCPU (config.autopilotResources).
		"mlops:memoryRequest": "256Mi",
		"mlops:ciPlatform":    "none", "mlops:ciJsonKey": "true",
	})
	mocks, outputs := w.run(t)
	cluster := mocks.One(t, "gcp:container/cluster:Cluster")
	if !cluster.Input("enableAutopilot").BoolValue() || cluster.Str("location") != "europe-west1" {
		t.Errorf("autopilot %v in %q, want true in europe-west1", cluster.Input("enableAutopilot"), cluster.Str("location"))
	}
	if n := len(mocks.OfType("gcp:container/nodePool:NodePool")); n != 0 {
		t.Errorf("%d node pools with autopilot", n)
	}
	if n := len(mocks.OfType("gcp:iam/workloadIdentityPool:WorkloadIdentityPool")); n != 0 {
		t.Errorf("%d Workload Identity pools with ciPlatform none", n)
	}
	mocks.One(t, "gcp:serviceaccount/key:Key")
	if key, _ := outputs["ciServiceAccountKey"].(string); key == "" {
		t.Errorf("no ciServiceAccountKey output with ciJsonKey true")
	}
}

// input is one resource input a setting should have reached.
type input struct {
	what      string
	got, want any
}

func requireInputs(t *testing.T, inputs []input) {
	t.Helper()
	for _, in := range inputs {
		if in.got != in.want {
			t.Errorf("%s = %v, want %v", in.what, in.got, in.want)
		}
	}
}
