package program

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/infra"
	"github.com/planets-mlops/deploy/internal/fingerprint"
	"github.com/planets-mlops/deploy/internal/testenv/fixture"
	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

const testProject = "planets-mlops-dev"

// projectCopy is a copy of the repository's model/ in a temporary project
// directory, so a test can change it, with the stack configuration of a
// user who followed the README.
type projectCopy struct {
	root, modelDir string
	config         map[string]string
}

func newWorkspace(t *testing.T, overrides map[string]string) *projectCopy {
	t.Helper()
	return newStackWorkspace(t, "dev", overrides)
}

func newStackWorkspace(t *testing.T, stack string, overrides map[string]string) *projectCopy {
	t.Helper()
	root := t.TempDir()
	w := &projectCopy{root: root, modelDir: filepath.Join(root, "model")}
	if err := os.CopyFS(w.modelDir, os.DirFS(filepath.Join(repoRoot, "model"))); err != nil {
		t.Fatalf("copying model/: %v", err)
	}
	base := map[string]string{
		"gcp:project":          testProject,
		"mlops:ciRepository":   "acme/planets",
		"mlops:ciRepositoryId": "123456789",
		"mlops:modelDir":       w.modelDir,
	}
	for k, v := range overrides {
		base[k] = v
	}
	w.config = mocktest.StackConfig(t, repoRoot, stack, base)
	return w
}

// run runs the program in the workspace and returns what it declared and
// its stack outputs.
func (w *projectCopy) run(t *testing.T) (*mocktest.Mocks, map[string]any) {
	t.Helper()
	t.Chdir(w.root) // the program stages its build context relative to the project
	mocks := &mocktest.Mocks{}
	outputs := map[string]any{}
	err := mocks.Run(func(ctx *pulumi.Context) error {
		declared, err := declare(ctx, "")
		if err != nil {
			return err
		}
		resolved := make(chan map[string]any, 1)
		declared.ToMapOutput().ApplyT(func(m map[string]any) error {
			resolved <- m
			return nil
		})
		select {
		case m := <-resolved:
			maps.Copy(outputs, m)
			return nil
		case <-time.After(time.Minute):
			return errors.New("stack outputs did not resolve within a minute")
		}
	}, w.config)
	if err != nil {
		t.Fatalf("program failed: %v", err)
	}
	return mocks, outputs
}

func TestGKEStackDeclaresTheWholeDeployment(t *testing.T) {
	w := newWorkspace(t, nil)
	mocks, outputs := w.run(t)

	counts := map[string]int{}
	for _, r := range mocks.Resources() {
		counts[r.Type]++
	}
	want := map[string]int{
		"mlops:infra:ProjectAPIs":                                           1,
		"mlops:infra:ModelRegistry":                                         1,
		"mlops:infra:CIIdentity":                                            1,
		"mlops:infra:GKECluster":                                            1,
		"mlops:infra:ModelImage":                                            1,
		"mlops:infra:ModelService":                                          1,
		"gcp:projects/service:Service":                                      7,
		"mlops:infra:EndpointAddress":                                       1,
		"gcp:compute/address:Address":                                       1,
		"gcp:artifactregistry/repository:Repository":                        1,
		"gcp:artifactregistry/repositoryIamMember:RepositoryIamMember":      2,
		"gcp:serviceaccount/account:Account":                                3,
		"gcp:serviceaccount/iAMMember:IAMMember":                            2,
		"gcp:projects/iAMMember:IAMMember":                                  3,
		"gcp:iam/workloadIdentityPool:WorkloadIdentityPool":                 1,
		"gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider": 1,
		"gcp:container/cluster:Cluster":                                     1,
		"gcp:container/nodePool:NodePool":                                   1,
		"pulumi:providers:kubernetes":                                       1,
		"docker:index/image:Image":                                          1,
		"kubernetes:core/v1:Namespace":                                      1,
		"kubernetes:apps/v1:Deployment":                                     1,
		"kubernetes:core/v1:Service":                                        1,
		"kubernetes:policy/v1:PodDisruptionBudget":                          1,
		"mlops:infra:DeployAccess":                                          1,
		"kubernetes:rbac.authorization.k8s.io/v1:Role":                      2,
		"kubernetes:rbac.authorization.k8s.io/v1:RoleBinding":               2,
		"kubernetes:rbac.authorization.k8s.io/v1:ClusterRole":               2,
		"kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding":        2,
	}
	for typ, n := range want {
		if counts[typ] != n {
			t.Errorf("%s: declared %d, want %d", typ, counts[typ], n)
		}
	}
	for typ := range counts {
		if _, ok := want[typ]; !ok {
			t.Errorf("unexpected resource type %s", typ)
		}
	}

	// The workloads go through the cluster's provider, never an ambient one.
	for _, r := range mocks.Resources() {
		if strings.HasPrefix(r.Type, "kubernetes:") && !strings.Contains(r.Provider, "pulumi:providers:kubernetes::cluster-k8s") {
			t.Errorf("%s %s uses provider %q, want the cluster's", r.Type, r.Name, r.Provider)
		}
	}

	image := mocks.One(t, "docker:index/image:Image")
	deployment := mocks.One(t, "kubernetes:apps/v1:Deployment")
	fp := outputs["modelFingerprint"].(string)
	if want, err := fingerprint.Compute(t.Context(), w.modelDir, fingerprint.Inputs{Platform: "linux/amd64"}); err != nil || fp != want {
		t.Errorf("modelFingerprint = %q, want the fingerprint of model/ for linux/amd64, %q (%v)", fp, want, err)
	}
	if got, want := image.Str("imageName"), "europe-west6-docker.pkg.dev/"+testProject+"/mlops/planet-classifier:"+fp; got != want {
		t.Errorf("imageName = %q, want %q", got, want)
	}
	digestRef := outputs["image"].(string)
	if !strings.HasPrefix(digestRef, "europe-west6-docker.pkg.dev/"+testProject+"/mlops/planet-classifier@sha256:") {
		t.Errorf("image output %q is not the pushed image by digest", digestRef)
	}
	containers := deployment.Input("spec.template.spec.containers").ArrayValue()
	if got := containers[0].ObjectValue()["image"].StringValue(); got != digestRef {
		t.Errorf("Deployment runs %q, want the image by digest %q", got, digestRef)
	}
	if got := deployment.Input("spec.template.metadata.annotations").ObjectValue()["mlops.planets/model-fingerprint"].StringValue(); got != fp {
		t.Errorf("pod template fingerprint annotation = %q, want %q", got, fp)
	}

	wantOutputs := map[string]any{
		"endpoint":                     "http://" + mocktest.StaticIP + ":8080",
		"clusterName":                  "mlops-planets",
		"ciServiceAccountEmail":        "mlops-ci@" + testProject + ".iam.gserviceaccount.com",
		"workloadIdentityProvider":     "projects/" + mocktest.ProjectNumber + "/locations/global/workloadIdentityPools/" + ciPool + "/providers/github",
		"ciPreviewServiceAccountEmail": "mlops-preview@" + testProject + ".iam.gserviceaccount.com",
		"registryUrl":                  "europe-west6-docker.pkg.dev/" + testProject + "/mlops",
	}
	for k, v := range wantOutputs {
		if outputs[k] != v {
			t.Errorf("output %s = %v, want %v", k, outputs[k], v)
		}
	}
	if kubeconfig, _ := outputs["kubeconfig"].(string); !strings.Contains(kubeconfig, "gke-gcloud-auth-plugin") {
		t.Errorf("kubeconfig output does not use gke-gcloud-auth-plugin:\n%s", kubeconfig)
	}
	if _, ok := outputs["ciServiceAccountKey"]; ok {
		t.Errorf("a JSON key was exported although ciJsonKey is false")
	}
}

// ciPool is the Workload Identity pool id: the deploy account's unique id.
var ciPool = "mlops-ci-" + mocktest.AccountUniqueID("mlops-ci@"+testProject+".iam.gserviceaccount.com")

// forbiddenRoles can grant roles, create keys or do anything at all.
var forbiddenRoles = []string{
	"roles/owner", "roles/editor",
	"roles/iam.securityAdmin", "roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountKeyAdmin",
	"roles/iam.workloadIdentityPoolAdmin", "roles/resourcemanager.projectIamAdmin",
	"roles/artifactregistry.admin", "roles/container.admin", "roles/storage.admin",
}

func TestRolesGrantedAreExactlyTheIntendedOnes(t *testing.T) {
	w := newWorkspace(t, map[string]string{"mlops:stateBucket": "planets-pulumi-state"})
	mocks, _ := w.run(t)

	ci := "serviceAccount:mlops-ci@" + testProject + ".iam.gserviceaccount.com"
	preview := "serviceAccount:mlops-preview@" + testProject + ".iam.gserviceaccount.com"
	pool := "principalSet://iam.googleapis.com/projects/" + mocktest.ProjectNumber + "/locations/global/workloadIdentityPools/" + ciPool
	nodes := "serviceAccount:mlops-planets-nodes@" + testProject + ".iam.gserviceaccount.com"
	repo := "projects/" + testProject + "/locations/europe-west6/repositories/mlops"
	want := []string{
		"project " + testProject + " roles/container.clusterViewer " + ci,
		"repository " + repo + " roles/artifactregistry.writer " + ci,
		"bucket planets-pulumi-state roles/storage.objectUser " + ci,
		"project " + testProject + " roles/container.defaultNodeServiceAccount " + nodes,
		"repository " + repo + " roles/artifactregistry.reader " + nodes,
		"project " + testProject + " roles/container.clusterViewer " + preview,
		"bucket planets-pulumi-state roles/storage.objectViewer " + preview,
		"serviceAccount projects/" + testProject + "/serviceAccounts/mlops-ci@" + testProject + ".iam.gserviceaccount.com roles/iam.workloadIdentityUser " +
			pool + "/attribute.job_workflow_ref/acme/planets/.github/workflows/deploy.yml@refs/heads/main",
		"serviceAccount projects/" + testProject + "/serviceAccounts/mlops-preview@" + testProject + ".iam.gserviceaccount.com roles/iam.workloadIdentityUser " +
			pool + "/attribute.repository_id/123456789",
	}
	var got []string
	for _, r := range mocks.Resources() {
		role := r.Str("role")
		if role == "" {
			continue
		}
		for _, bad := range forbiddenRoles {
			if role == bad {
				t.Errorf("%s grants the forbidden role %s", r.Name, role)
			}
		}
		switch {
		case r.Str("repository") != "":
			got = append(got, "repository "+r.Str("repository")+" "+role+" "+r.Str("member"))
		case r.Str("bucket") != "":
			got = append(got, "bucket "+r.Str("bucket")+" "+role+" "+r.Str("member"))
		case r.Str("serviceAccountId") != "":
			got = append(got, "serviceAccount "+r.Str("serviceAccountId")+" "+role+" "+r.Str("member"))
		default:
			got = append(got, "project "+r.Str("project")+" "+role+" "+r.Str("member"))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("grants:\n  got  %s\n  want %s", strings.Join(got, "\n       "), strings.Join(want, "\n       "))
	}
}

func TestKubernetesTargetDeclaresNothingOnGCP(t *testing.T) {
	const prebuilt = "registry.example.com/planets/model@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	w := newWorkspace(t, map[string]string{
		"mlops:target":      "kubernetes",
		"mlops:image":       prebuilt,
		"mlops:kubeconfig":  "apiVersion: v1\nkind: Config\n",
		"mlops:kubeContext": "kind-mlops",
		"mlops:serviceType": "ClusterIP",
		"gcp:project":       "",
	})
	mocks, outputs := w.run(t)
	for _, r := range mocks.Resources() {
		if strings.HasPrefix(r.Type, "gcp:") || strings.HasPrefix(r.Type, "docker:") {
			t.Errorf("target kubernetes declared %s %s", r.Type, r.Name)
		}
	}
	provider := mocks.One(t, "pulumi:providers:kubernetes")
	if !provider.IsSecret("kubeconfig") {
		t.Errorf("the provider's kubeconfig is not a secret")
	}
	if got := provider.Str("context"); got != "kind-mlops" {
		t.Errorf("provider context = %q", got)
	}
	deployment := mocks.One(t, "kubernetes:apps/v1:Deployment")
	if got := deployment.Input("spec.template.spec.containers").ArrayValue()[0].ObjectValue()["image"].StringValue(); got != prebuilt {
		t.Errorf("Deployment runs %q, want the prebuilt %q", got, prebuilt)
	}
	if got := deployment.Input("spec.template.metadata.annotations").ObjectValue()["mlops.planets/model-fingerprint"].StringValue(); got != outputs["modelFingerprint"] || got == "" {
		t.Errorf("fingerprint annotation %q, want the fingerprint of modelDir %v", got, outputs["modelFingerprint"])
	}
	if outputs["endpoint"] != "http://planet-classifier.live.svc.cluster.local:8080" {
		t.Errorf("endpoint = %v", outputs["endpoint"])
	}
}

// inputsByResource is every declared resource's inputs, keyed by type and name.
func inputsByResource(mocks *mocktest.Mocks) map[string]resource.PropertyMap {
	out := map[string]resource.PropertyMap{}
	for _, r := range mocks.Resources() {
		out[r.Type+"::"+r.Name] = r.Inputs
	}
	return out
}

// changedResources lists the resources whose inputs differ between two runs.
func changedResources(before, after map[string]resource.PropertyMap) []string {
	var changed []string
	for key, in := range before {
		if other, ok := after[key]; !ok || !in.DeepEquals(other) {
			changed = append(changed, key)
		}
	}
	for key := range after {
		if _, ok := before[key]; !ok {
			changed = append(changed, key)
		}
	}
	slices.Sort(changed)
	return changed
}

func TestSameTreeDeclaresTheSameInputs(t *testing.T) {
	w := newWorkspace(t, nil)
	first, _ := w.run(t)
	second, _ := w.run(t)
	if changed := changedResources(inputsByResource(first), inputsByResource(second)); len(changed) > 0 {
		t.Fatalf("two runs on the same tree differ in: %v", changed)
	}
}

// A new model (the second one, testdata/seed78, with its report) changes
// the image and the Deployment and nothing else. (One flipped byte of the
// model, which this test used to make, is now refused before anything is
// declared: its report is of another model; see gate_test.go.)
func TestANewModelChangesOnlyImageAndDeployment(t *testing.T) {
	w := newWorkspace(t, nil)
	before, beforeOut := w.run(t)

	fixture.UseModel(t, w.modelDir, filepath.Join(repoRoot, "testdata", "seed78", "model", "artifacts"))
	after, afterOut := w.run(t)

	want := []string{"docker:index/image:Image::model-image", "kubernetes:apps/v1:Deployment::model-service"}
	if changed := changedResources(inputsByResource(before), inputsByResource(after)); !slices.Equal(changed, want) {
		t.Fatalf("a new model changed %v, want exactly %v", changed, want)
	}
	if beforeOut["modelFingerprint"] == afterOut["modelFingerprint"] {
		t.Fatalf("the fingerprint did not change")
	}
}

func TestFileModesMtimesAndOtherFilesChangeNothing(t *testing.T) {
	w := newWorkspace(t, nil)
	before, _ := w.run(t)

	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	err := filepath.WalkDir(w.modelDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		// Another umask: group and other lose read, the exec bit stays.
		if err := os.Chmod(path, info.Mode().Perm()&^0o077); err != nil {
			return err
		}
		return os.Chtimes(path, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.root, "NOTES.md"), []byte("not part of the model"), 0o644); err != nil {
		t.Fatal(err)
	}
	after, _ := w.run(t)
	if changed := changedResources(inputsByResource(before), inputsByResource(after)); len(changed) > 0 {
		t.Fatalf("modes, mtimes and files outside the model changed %v", changed)
	}
}

func TestBadConfigDeclaresNothing(t *testing.T) {
	w := newWorkspace(t, map[string]string{"mlops:replicas": "0"})
	t.Chdir(w.root)
	mocks := &mocktest.Mocks{}
	err := mocks.Run(Program(""), w.config)
	if err == nil || !strings.Contains(err.Error(), `mlops:replicas: got "0"`) {
		t.Fatalf("program error = %v, want one naming mlops:replicas", err)
	}
	if declared := mocks.Resources(); len(declared) > 0 {
		t.Fatalf("a bad config still declared %d resources, first %s", len(declared), declared[0].Type)
	}
}

func TestLocalExampleStackBuildsAndPushesToTheLocalRegistry(t *testing.T) {
	// No ambient kubeconfig: the version check must not reach a real cluster.
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "no-ambient-kubeconfig"))
	w := newStackWorkspace(t, "local", map[string]string{"gcp:project": "", "mlops:ciRepository": ""})
	mocks, outputs := w.run(t)
	for _, r := range mocks.Resources() {
		if strings.HasPrefix(r.Type, "gcp:") {
			t.Errorf("the local stack declared %s %s", r.Type, r.Name)
		}
	}
	image := mocks.One(t, "docker:index/image:Image")
	if got, want := image.Str("imageName"), "localhost:5001/planets/planet-classifier:"+outputs["modelFingerprint"].(string); got != want {
		t.Errorf("imageName = %q, want %q", got, want)
	}
	if got := image.Str("registry.server"); got != "localhost:5001" {
		t.Errorf("registry server = %q", got)
	}
	if got := mocks.One(t, "pulumi:providers:kubernetes").Str("context"); got != "" {
		t.Errorf("context = %q, want none (the kubeconfig's current context)", got)
	}
	if n := len(mocks.OfType("kubernetes:policy/v1:PodDisruptionBudget")); n != 0 {
		t.Errorf("one replica, yet %d PodDisruptionBudgets", n)
	}
}

// TestEveryGCPResourceWaitsForEveryAPI would catch the race of depending on
// the ProjectAPIs component: that expands to the services registered at
// that moment, which was all six in only 296 of 300 runs. The program now
// names the services themselves; the runs at several GOMAXPROCS check it
// does not depend on scheduling.
func TestEveryGCPResourceWaitsForEveryAPI(t *testing.T) {
	// Every kind of GCP resource: the Workload Identity pool and provider
	// (federation), and the JSON key (only without federation).
	federated := newWorkspace(t, map[string]string{"mlops:stateBucket": "planets-pulumi-state"})
	withKey := newWorkspace(t, map[string]string{"mlops:stateBucket": "planets-pulumi-state", "mlops:ciJsonKey": "true", "mlops:ciPlatform": "none"})
	for _, w := range []*projectCopy{federated, withKey} {
		everyGCPResourceWaitsForEveryAPI(t, w)
	}
}

func everyGCPResourceWaitsForEveryAPI(t *testing.T, w *projectCopy) {
	t.Helper()
	for _, procs := range []int{1, 2, 8} {
		old := runtime.GOMAXPROCS(procs)
		for run := range 5 {
			mocks, _ := w.run(t)
			var services []string
			for _, svc := range mocks.OfType("gcp:projects/service:Service") {
				services = append(services, "urn:pulumi:dev::mlops::mlops:infra:ProjectAPIs$gcp:projects/service:Service::"+svc.Name)
			}
			if len(services) != len(infra.RequiredAPIs) {
				t.Fatalf("%d services, want %d", len(services), len(infra.RequiredAPIs))
			}
			checked := 0
			for _, r := range mocks.Resources() {
				if !r.Custom || !strings.HasPrefix(r.Type, "gcp:") || r.Type == "gcp:projects/service:Service" {
					continue
				}
				checked++
				for _, svc := range services {
					if !slices.Contains(r.DependsOn, svc) {
						t.Errorf("GOMAXPROCS=%d run %d: %s %s does not wait for %s", procs, run, r.Type, r.Name, svc)
					}
				}
			}
			if checked < 12 {
				t.Fatalf("checked only %d GCP resources", checked)
			}
		}
		runtime.GOMAXPROCS(old)
	}
}

// preview runs the program as the preview of `pulumi preview` or `pulumi
// up` does, against the state and the cloud the mocks hold.
func (w *projectCopy) preview(t *testing.T, mocks *mocktest.Mocks) error {
	t.Helper()
	t.Chdir(w.root)
	mocks.Preview = true
	return mocks.Run(func(ctx *pulumi.Context) error {
		_, err := declare(ctx, "")
		return err
	}, w.config)
}

// stateOf is the state a successful `up` of the workspace leaves.
func stateOf(t *testing.T, w *projectCopy) map[string]bool {
	t.Helper()
	mocks, _ := w.run(t)
	state := map[string]bool{}
	for _, r := range mocks.Resources() {
		state[mocktest.Key(r.Type, r.Name)] = true
	}
	return state
}

// lookupsOf are the invokes that look a resource up.
func lookupsOf(mocks *mocktest.Mocks) []string {
	var out []string
	for _, token := range mocks.Invokes() {
		if strings.Contains(token, "/getCluster:") || strings.Contains(token, "/getRepository:") ||
			strings.Contains(token, "/getAccount:") || strings.Contains(token, "/getWorkloadIdentityPool:") {
			out = append(out, token)
		}
	}
	slices.Sort(out)
	return out
}

// The guide's project: what it made by hand, by the ids `pulumi import` takes.
const guideClusterID = "projects/" + testProject + "/locations/europe-west6-a/clusters/mlops-kubernetes"

var guideCluster = map[string]map[string]any{
	guideClusterID: {
		"name": "mlops-kubernetes", "nodePools": []any{map[string]any{"name": "default-pool"}},
	},
}

// previewablePrebuilt stands in for the image build in previews that get
// past the collision check: the mock monitor cannot unmarshal the registry
// password, a secret still unknown while the APIs are to be enabled (the
// engine can).
var previewablePrebuilt = map[string]string{
	"mlops:image": "europe-west6-docker.pkg.dev/" + testProject + "/mlops/planet-classifier@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
}

func TestFirstPreviewLooksUpEveryNameItWouldTake(t *testing.T) {
	w := newWorkspace(t, previewablePrebuilt)
	mocks := &mocktest.Mocks{}
	if err := w.preview(t, mocks); err != nil {
		t.Fatalf("preview of a new stack in an empty project failed: %v", err)
	}
	want := []string{
		"gcp:artifactregistry/getRepository:getRepository",
		"gcp:container/getCluster:getCluster",
		"gcp:serviceaccount/getAccount:getAccount",
		"gcp:serviceaccount/getAccount:getAccount",
		"gcp:serviceaccount/getAccount:getAccount",
	}
	if got := lookupsOf(mocks); !slices.Equal(got, want) {
		t.Errorf("lookups %v, want %v", got, want)
	}
}

// A project the guide set up: the default cluster name is not the guide's,
// so the first preview of a stack with the defaults goes through.
func TestTheGuidesClusterDoesNotStopAStackWithTheDefaults(t *testing.T) {
	w := newWorkspace(t, previewablePrebuilt)
	if err := w.preview(t, &mocktest.Mocks{Cloud: guideCluster}); err != nil {
		t.Fatalf("the first preview in the guide's project failed: %v", err)
	}
}

func TestCollisionsStopThePreviewWithTheWaysForward(t *testing.T) {
	const project = testProject
	tests := []struct {
		name, id, configKey string
		cloud               map[string]any
		want                []string
	}{
		{"the guide's cluster", "projects/" + project + "/locations/europe-west6-a/clusters/mlops-kubernetes", "clusterName",
			guideCluster["projects/"+project+"/locations/europe-west6-a/clusters/mlops-kubernetes"],
			[]string{
				"The GKE cluster mlops-kubernetes exists already in europe-west6-a of project " + project + ", and this stack did not create it.",
				"it has no Workload Identity and it still has its default node pool: it cannot be adopted as it is",
				`{"resources":[{"type":"mlops:infra:GKECluster","name":"parent","logicalName":"cluster","component":true},` +
					`{"type":"gcp:container/cluster:Cluster","name":"resource","logicalName":"cluster","id":"projects/` + project + `/locations/europe-west6-a/clusters/mlops-kubernetes","parent":"parent"}]}`,
				"' > adopt-cluster.json\n    pulumi import --stack dev --file adopt-cluster.json --generate-code=false --protect=false",
			}},
		{"a registry repository", "projects/" + project + "/locations/europe-west6/repositories/mlops", "repositoryId", map[string]any{},
			[]string{
				"The Artifact Registry repository mlops exists already in europe-west6 of project " + project + ", and this stack did not create it.",
				`{"type":"mlops:infra:ModelRegistry","name":"parent","logicalName":"registry","component":true},` +
					`{"type":"gcp:artifactregistry/repository:Repository","name":"resource","logicalName":"registry","id":"projects/` + project + `/locations/europe-west6/repositories/mlops","parent":"parent"}`,
				"pulumi import --stack dev --file adopt-registry.json",
			}},
		{"the CI service account", "projects/" + project + "/serviceAccounts/mlops-ci@" + project + ".iam.gserviceaccount.com", "ciServiceAccountId", map[string]any{},
			[]string{
				"The service account mlops-ci@" + project + ".iam.gserviceaccount.com exists already in project " + project + ", and this stack did not create it.",
				`{"type":"mlops:infra:CIIdentity","name":"parent","logicalName":"ci","component":true},` +
					`{"type":"gcp:serviceaccount/account:Account","name":"resource","logicalName":"ci","id":"projects/` + project + `/serviceAccounts/mlops-ci@` + project + `.iam.gserviceaccount.com","parent":"parent"}`,
			}},
		{"the preview service account", "projects/" + project + "/serviceAccounts/mlops-preview@" + project + ".iam.gserviceaccount.com", "ciPreviewServiceAccountId", map[string]any{},
			[]string{
				"The service account mlops-preview@" + project + ".iam.gserviceaccount.com exists already in project " + project + ", and this stack did not create it.",
				`{"type":"gcp:serviceaccount/account:Account","name":"resource","logicalName":"ci-preview","id":"projects/` + project + `/serviceAccounts/mlops-preview@` + project + `.iam.gserviceaccount.com","parent":"parent"}`,
			}},
		{"the nodes' service account", "projects/" + project + "/serviceAccounts/mlops-planets-nodes@" + project + ".iam.gserviceaccount.com", "clusterName", map[string]any{},
			[]string{
				"The service account mlops-planets-nodes@" + project + ".iam.gserviceaccount.com exists already in project " + project,
				`{"type":"gcp:serviceaccount/account:Account","name":"resource","logicalName":"cluster-nodes","id":"projects/` + project + `/serviceAccounts/mlops-planets-nodes@` + project + `.iam.gserviceaccount.com","parent":"parent"}`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var overrides map[string]string
			if tt.id == guideClusterID {
				// A stack that kept the guide's name, as stacks created
				// before the default changed pin it.
				overrides = map[string]string{"mlops:clusterName": "mlops-kubernetes"}
			}
			w := newWorkspace(t, overrides)
			mocks := &mocktest.Mocks{Cloud: map[string]map[string]any{tt.id: tt.cloud}}
			err := w.preview(t, mocks)
			if err == nil {
				t.Fatalf("the preview succeeded although %s exists", tt.id)
			}
			msg := err.Error()
			for _, want := range append(tt.want,
				"1 resource(s) this stack would create exist already; nothing was created.",
				"Either choose another name:\n    pulumi config set mlops:"+tt.configKey+" <another-name>",
				"or adopt it into the stack") {
				if !strings.Contains(msg, want) {
					t.Errorf("the error does not say\n%s\nin:\n%s", want, msg)
				}
			}
		})
	}
}

// A re-run of an existing stack, as CI runs it: every resource is in the
// state, CI's identity may not read IAM, and the project holds exactly what
// the stack made. Nothing is looked up, in the preview or the update.
func TestReRunOfAnExistingStackLooksNothingUp(t *testing.T) {
	w := newWorkspace(t, nil)
	state := stateOf(t, w)
	ours := map[string]map[string]any{
		"projects/" + testProject + "/locations/europe-west6-a/clusters/mlops-planets":                                 {},
		"projects/" + testProject + "/locations/europe-west6/repositories/mlops":                                       {},
		"projects/" + testProject + "/serviceAccounts/mlops-ci@" + testProject + ".iam.gserviceaccount.com":            {},
		"projects/" + testProject + "/serviceAccounts/mlops-preview@" + testProject + ".iam.gserviceaccount.com":       {},
		"projects/" + testProject + "/locations/global/workloadIdentityPools/" + ciPool:                                {},
		"projects/" + testProject + "/serviceAccounts/mlops-planets-nodes@" + testProject + ".iam.gserviceaccount.com": {},
	}
	ciCannotReadIAM := map[string]bool{
		"gcp:serviceaccount/getAccount:getAccount":                true,
		"gcp:iam/getWorkloadIdentityPool:getWorkloadIdentityPool": true,
	}
	mocks := &mocktest.Mocks{InState: state, Cloud: ours, Denied: ciCannotReadIAM}
	if err := w.preview(t, mocks); err != nil {
		t.Fatalf("the preview of the existing stack failed: %v", err)
	}
	if got := lookupsOf(mocks); len(got) > 0 {
		t.Errorf("the preview of an existing stack looked up %v", got)
	}
	update := &mocktest.Mocks{Cloud: ours, Denied: ciCannotReadIAM}
	w.config = maps.Clone(w.config)
	if err := update.Run(func(ctx *pulumi.Context) error { _, err := declare(ctx, ""); return err }, w.config); err != nil {
		t.Fatalf("the update failed: %v", err)
	}
	if got := lookupsOf(update); len(got) > 0 {
		t.Errorf("the update looked up %v", got)
	}
}

// After an `up` that failed halfway, what it created is in the state and is
// not looked up again; only what is still to be created is.
func TestOnlyWhatIsNotInTheStateIsLookedUp(t *testing.T) {
	w := newWorkspace(t, nil)
	state := stateOf(t, w)
	delete(state, mocktest.Key("gcp:container/cluster:Cluster", "cluster"))
	mocks := &mocktest.Mocks{InState: state, Cloud: map[string]map[string]any{
		"projects/" + testProject + "/locations/europe-west6/repositories/mlops": {},
	}}
	if err := w.preview(t, mocks); err != nil {
		t.Fatalf("the stack's own repository was taken for a collision: %v", err)
	}
	if got := lookupsOf(mocks); !slices.Equal(got, []string{"gcp:container/getCluster:getCluster"}) {
		t.Errorf("lookups %v, want only the cluster's", got)
	}
}

// An identity that may not read service accounts (a new CI service account
// id previewed by CI) gets a warning, not a failed preview.
func TestALookupWithoutPermissionWarnsAndGoesOn(t *testing.T) {
	w := newWorkspace(t, previewablePrebuilt)
	mocks := &mocktest.Mocks{Denied: map[string]bool{"gcp:serviceaccount/getAccount:getAccount": true}}
	if err := w.preview(t, mocks); err != nil {
		t.Fatalf("a 403 on a lookup failed the preview: %v", err)
	}
}

// The endpoint is the stack's static address, or the one a team already
// hands out (MLEM's, promoted to static): a new Service or cluster keeps it.
func TestTheEndpointIsAStaticAddress(t *testing.T) {
	const id = "projects/" + testProject + "/regions/europe-west6/addresses/mlem-endpoint"
	w := newWorkspace(t, map[string]string{"mlops:loadBalancerAddress": "mlem-endpoint"})
	clusterIP := newWorkspace(t, map[string]string{"mlops:serviceType": "ClusterIP"})
	mocks := &mocktest.Mocks{Cloud: map[string]map[string]any{id: {"address": "34.65.1.2"}}}
	t.Chdir(w.root)
	var endpoint any
	err := mocks.Run(func(ctx *pulumi.Context) error {
		declared, err := declare(ctx, "")
		if err != nil {
			return err
		}
		endpoint = resolveOutput(t, pulumi.ToOutput(declared["endpoint"]))
		return nil
	}, w.config)
	if err != nil {
		t.Fatal(err)
	}
	address := mocks.One(t, "gcp:compute/address:Address")
	if address.ImportID != id || !address.RetainOnDelete {
		t.Errorf("the given address is imported as %q, retained %v", address.ImportID, address.RetainOnDelete)
	}
	if got := mocks.One(t, "kubernetes:core/v1:Service").Str("spec.loadBalancerIP"); got != "34.65.1.2" {
		t.Errorf("the Service asks for %q", got)
	}
	if endpoint != "http://34.65.1.2:8080" {
		t.Errorf("endpoint %v", endpoint)
	}

	noLB, _ := clusterIP.run(t)
	if n := len(noLB.OfType("gcp:compute/address:Address")); n != 0 {
		t.Errorf("a ClusterIP Service got %d addresses", n)
	}
}

// resolveOutput waits, inside a program, for an output's value.
func resolveOutput(t *testing.T, out pulumi.Output) any {
	t.Helper()
	ch := make(chan any, 1)
	out.ApplyT(func(v any) any { ch <- v; return v })
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatal("the output did not resolve within a minute")
		return nil
	}
}

// TestGKEStackPassesNoCredentialToAnyResource: no registry password, no
// access token, in any resource's inputs (pulumi-docker keeps an Image's
// inputs in the state, which every preview can decrypt). The push uses the
// docker CLI's credential helper (gcloud auth configure-docker).
func TestGKEStackPassesNoCredentialToAnyResource(t *testing.T) {
	w := newWorkspace(t, nil)
	mocks, _ := w.run(t)
	for _, token := range mocks.Invokes() {
		if token == "gcp:organizations/getClientConfig:getClientConfig" {
			t.Errorf("the program reads the caller's access token (%s)", token)
		}
	}
	for _, r := range mocks.Resources() {
		if found := findString(resource.NewObjectProperty(r.Inputs), mocktest.AccessToken); found {
			t.Errorf("%s %s has the access token in its inputs", r.Type, r.Name)
		}
	}
	registry := mocks.One(t, "docker:index/image:Image").Input("registry")
	if !registry.IsObject() || len(registry.ObjectValue()) != 1 || registry.ObjectValue()["server"].StringValue() != "europe-west6-docker.pkg.dev" {
		t.Errorf("image registry inputs %v, want only the server europe-west6-docker.pkg.dev", registry)
	}
}

// findString tells whether s occurs in any string inside v, secrets included.
func findString(v resource.PropertyValue, s string) bool {
	switch {
	case v.IsSecret():
		return findString(v.SecretValue().Element, s)
	case v.IsString():
		return strings.Contains(v.StringValue(), s)
	case v.IsArray():
		for _, e := range v.ArrayValue() {
			if findString(e, s) {
				return true
			}
		}
	case v.IsObject():
		for _, e := range v.ObjectValue() {
			if findString(e, s) {
				return true
			}
		}
	}
	return false
}
