package planreview

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

const urnPrefix = "urn:pulumi:dev::mlops::"

// eventLog writes events as `pulumi preview --event-log` does: one
// apitype.EngineEvent JSON object a line.
func eventLog(t *testing.T, events ...apitype.EngineEvent) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for i, e := range events {
		e.Sequence = i
		if err := enc.Encode(e); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func step(op apitype.OpType, typ, urnType, name string) apitype.EngineEvent {
	return apitype.EngineEvent{ResourcePreEvent: &apitype.ResourcePreEvent{
		Metadata: apitype.StepEventMetadata{Op: op, Type: typ, URN: urnPrefix + urnType + "::" + name},
		Planning: true,
	}}
}

func TestAdminChangesListsWhatCICannotApply(t *testing.T) {
	log := eventLog(t,
		apitype.EngineEvent{PreludeEvent: &apitype.PreludeEvent{Config: map[string]string{}}},
		step(apitype.OpSame, "pulumi:pulumi:Stack", "pulumi:pulumi:Stack", "mlops-dev"),
		step(apitype.OpSame, "gcp:projects/service:Service", "mlops:infra:ProjectAPIs$gcp:projects/service:Service", "apis-container"),
		step(apitype.OpCreate, "gcp:projects/service:Service", "mlops:infra:ProjectAPIs$gcp:projects/service:Service", "apis-monitoring"),
		step(apitype.OpUpdate, "gcp:container/nodePool:NodePool", "mlops:infra:GKECluster$gcp:container/nodePool:NodePool", "cluster-pool"),
		step(apitype.OpCreateReplacement, "gcp:container/cluster:Cluster", "mlops:infra:GKECluster$gcp:container/cluster:Cluster", "cluster"),
		step(apitype.OpReplace, "gcp:container/cluster:Cluster", "mlops:infra:GKECluster$gcp:container/cluster:Cluster", "cluster"),
		step(apitype.OpUpdate, "gcp:artifactregistry/repository:Repository", "mlops:infra:ModelRegistry$gcp:artifactregistry/repository:Repository", "registry"),
		step(apitype.OpCreate, "gcp:projects/iAMMember:IAMMember", "mlops:infra:CIIdentity$gcp:projects/iAMMember:IAMMember", "ci-preview-container-viewer"),
		step(apitype.OpDelete, "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember", "mlops:infra:CIIdentity$gcp:artifactregistry/repositoryIamMember:RepositoryIamMember", "ci-registry-writer"),
		step(apitype.OpUpdate, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider", "mlops:infra:CIIdentity$gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider", "ci-github"),
		// What CI applies itself: the image, the workloads, providers.
		step(apitype.OpCreate, "docker:index/image:Image", "mlops:infra:ModelImage$docker:index/image:Image", "image"),
		step(apitype.OpUpdate, "kubernetes:apps/v1:Deployment", "mlops:infra:ModelService$kubernetes:apps/v1:Deployment", "model"),
		// A label change on the Namespace (Pod Security) is an admin's.
		step(apitype.OpUpdate, "kubernetes:core/v1:Namespace", "mlops:infra:ModelService$kubernetes:core/v1:Namespace", "model-namespace"),
		step(apitype.OpCreate, "kubernetes:rbac.authorization.k8s.io/v1:Role", "mlops:infra:DeployAccess$kubernetes:rbac.authorization.k8s.io/v1:Role", "deploy-access-deploy"),
		step(apitype.OpCreateReplacement, "kubernetes:core/v1:Namespace", "mlops:infra:ModelService$kubernetes:core/v1:Namespace", "other-namespace"),
		step(apitype.OpReplace, "pulumi:providers:kubernetes", "pulumi:providers:kubernetes", "cluster-k8s"),
		step(apitype.OpUpdate, "pulumi:providers:gcp", "pulumi:providers:gcp", "default_9_6_0"),
		step(apitype.OpCreate, "mlops:infra:CIIdentity", "mlops:infra:CIIdentity", "ci"),
		// Reads change nothing.
		step(apitype.OpRead, "gcp:container/cluster:Cluster", "gcp:container/cluster:Cluster", "existing"),
		step(apitype.OpDeleteReplaced, "gcp:container/cluster:Cluster", "mlops:infra:GKECluster$gcp:container/cluster:Cluster", "cluster"),
		apitype.EngineEvent{SummaryEvent: &apitype.SummaryEvent{}},
	)
	changes, err := AdminChanges(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		ops := make([]string, len(c.Ops))
		for i, op := range c.Ops {
			ops[i] = string(op)
		}
		got = append(got, c.What+" | "+c.Name()+" | "+strings.Join(ops, ","))
	}
	want := []string{
		"an API of the project | apis-monitoring | create",
		"the node pool | cluster-pool | update",
		"the GKE cluster | cluster | create-replacement,replace,delete-replaced",
		"the image registry (its cleanup policy) | registry | update",
		"IAM (accounts, grants, Workload Identity) | ci-preview-container-viewer | create",
		"IAM (accounts, grants, Workload Identity) | ci-registry-writer | delete",
		"IAM (accounts, grants, Workload Identity) | ci-github | update",
		"the model's Namespace (its Pod Security labels) | model-namespace | update",
		"Kubernetes RBAC | deploy-access-deploy | create",
		"the model's Namespace (its Pod Security labels) | other-namespace | create-replacement",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("admin changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	md := Markdown(changes)
	for _, s := range []string{"need an admin's `pulumi up --stack dev`", "- the GKE cluster: `cluster` (`gcp:container/cluster:Cluster`), create-replacement, replace, delete-replaced\n"} {
		if !strings.Contains(md, s) {
			t.Errorf("Markdown lacks %q:\n%s", s, md)
		}
	}
}

func TestAdminChangesNothingWhenCICanApplyAll(t *testing.T) {
	log := eventLog(t,
		step(apitype.OpSame, "gcp:container/cluster:Cluster", "mlops:infra:GKECluster$gcp:container/cluster:Cluster", "cluster"),
		step(apitype.OpCreate, "docker:index/image:Image", "mlops:infra:ModelImage$docker:index/image:Image", "image"),
		step(apitype.OpUpdate, "kubernetes:apps/v1:Deployment", "mlops:infra:ModelService$kubernetes:apps/v1:Deployment", "model"),
		step(apitype.OpSame, "kubernetes:core/v1:Namespace", "mlops:infra:ModelService$kubernetes:core/v1:Namespace", "model-namespace"),
	)
	changes, err := AdminChanges(strings.NewReader(log + "\n"))
	if err != nil || len(changes) != 0 || Markdown(changes) != "" {
		t.Errorf("changes %v, err %v, markdown %q; want none", changes, err, Markdown(changes))
	}
}

func TestAdminChangesRefusesABrokenLog(t *testing.T) {
	if _, err := AdminChanges(strings.NewReader(`{"sequence":0}` + "\n{not json\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("err = %v, want one naming line 2", err)
	}
}
