package infra

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

// declareCIIdentity declares the identity args describe, pushing to the
// test repository.
func declareCIIdentity(t *testing.T, args CIIdentityArgs) (*mocktest.Mocks, map[string]string) {
	t.Helper()
	got := map[string]string{}
	mocks := declare(t, func(ctx *pulumi.Context) error {
		repo, err := testRepository(ctx)
		if err != nil {
			return err
		}
		args.Repository = repo
		identity, err := NewCIIdentity(ctx, "ci", &args)
		if err != nil {
			return err
		}
		got["email"] = resolve[string](t, identity.Account.Email)
		got["previewEmail"] = resolve[string](t, identity.PreviewAccount.Email)
		got["provider"] = resolve[string](t, identity.WorkloadIdentityProvider)
		got["key"] = resolve[string](t, identity.Key)
		if !pulumi.IsSecret(identity.Key) {
			t.Errorf("the JSON key output is not a secret")
		}
		return nil
	})
	return mocks, got
}

var (
	githubCI = CIIdentityArgs{
		Project: testProject, ServiceAccountID: "mlops-ci", PreviewServiceAccountID: "mlops-preview",
		Platform: CIGitHub, SourceRepository: "acme/planets", SourceRepositoryID: "123456789", DefaultBranch: "main",
	}
	gitlabCI = CIIdentityArgs{
		Project: testProject, ServiceAccountID: "mlops-ci", PreviewServiceAccountID: "mlops-preview",
		Platform: CIGitLab, SourceRepository: "data-science/planets", SourceRepositoryID: "42", DefaultBranch: "main",
		GitLabURL: "https://gitlab.example.com",
	}
	deployEmail  = "mlops-ci@" + testProject + ".iam.gserviceaccount.com"
	previewEmail = "mlops-preview@" + testProject + ".iam.gserviceaccount.com"
	// ciPoolID is the pool id the mocks lead to: the deploy account's unique id.
	ciPoolID = "mlops-ci-" + mocktest.AccountUniqueID(deployEmail)
	ciPool   = "projects/" + mocktest.ProjectNumber + "/locations/global/workloadIdentityPools/" + ciPoolID
)

func TestCIIdentityAdmitsOnlyTheConfiguredGitHubRepository(t *testing.T) {
	mocks, got := declareCIIdentity(t, githubCI)
	for _, r := range mocks.Resources() {
		if r.Custom && r.Name != "repo" && !strings.Contains(r.Parent, "::mlops:infra:CIIdentity::") {
			t.Errorf("%s %s is not parented to the CIIdentity (parent %q)", r.Type, r.Name, r.Parent)
		}
	}
	provider := mocks.One(t, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
	if c := provider.Str("attributeCondition"); c != `assertion.repository_id == "123456789" && assertion.repository == "acme/planets"` {
		t.Errorf("attribute condition %q", c)
	}
	if issuer := provider.Str("oidc.issuerUri"); issuer != "https://token.actions.githubusercontent.com" {
		t.Errorf("issuer %q", issuer)
	}
	if id := mocks.One(t, "gcp:iam/workloadIdentityPool:WorkloadIdentityPool").Str("workloadIdentityPoolId"); id != ciPoolID || len(id) > 32 {
		t.Errorf("pool id %q, want %q (at most 32 characters)", id, ciPoolID)
	}
	writer := mocks.One(t, "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
	if writer.Str("role") != "roles/artifactregistry.writer" || writer.Str("repository") != "projects/"+testProject+"/locations/europe-west6/repositories/mlops" ||
		writer.Str("member") != "serviceAccount:"+deployEmail {
		t.Errorf("registry grant %s on %s to %s", writer.Str("role"), writer.Str("repository"), writer.Str("member"))
	}
	if len(mocks.OfType("gcp:storage/bucketIAMMember:BucketIAMMember")) != 0 {
		t.Errorf("a state bucket grant without a state bucket")
	}
	if len(mocks.OfType("gcp:serviceaccount/key:Key")) != 0 || got["key"] != "" {
		t.Errorf("a JSON key was created although not asked for")
	}
	if got["email"] != deployEmail || got["previewEmail"] != previewEmail {
		t.Errorf("emails %q, %q", got["email"], got["previewEmail"])
	}
	if got["provider"] != ciPool+"/providers/github" {
		t.Errorf("provider name %q", got["provider"])
	}
}

// TestCIIdentityPoolIDIsNewAfterADestroy: a deleted pool's id stays taken
// for 30 days, so the id must differ when a destroyed stack is brought up
// again. It carries the deploy account's unique id, which GCP assigns anew
// to every account it creates, also under a reused account id.
func TestCIIdentityPoolIDIsNewAfterADestroy(t *testing.T) {
	for _, tc := range []struct{ accountID, uniqueID, want string }{
		{"mlops-ci", "104725349876543210987", "mlops-ci-104725349876543210987"},
		{"mlops-ci", "118203948576102938475", "mlops-ci-118203948576102938475"},
		{"a-very-long-service-account-id", "104725349876543210987", "a-very-lon-104725349876543210987"},
		{"deploy-----ci", "104725349876543210987", "deploy-104725349876543210987"},
	} {
		got := workloadIdentityPoolID(tc.accountID, tc.uniqueID)
		if got != tc.want || len(got) > 32 || strings.Contains(got, "--") {
			t.Errorf("workloadIdentityPoolID(%q, %q) = %q, want %q (4-32 characters)", tc.accountID, tc.uniqueID, got, tc.want)
		}
	}
	// Under mocks, the pool's id is the account's unique id, not a constant.
	mocks, _ := declareCIIdentity(t, githubCI)
	if id := mocks.One(t, "gcp:iam/workloadIdentityPool:WorkloadIdentityPool").Str("workloadIdentityPoolId"); !strings.HasSuffix(id, "-"+mocktest.AccountUniqueID(deployEmail)) {
		t.Errorf("pool id %q does not carry the deploy account's unique id", id)
	}
}

// grantsOf lists every role binding declared, as "<scope> <resource> <role> <member>".
func grantsOf(mocks *mocktest.Mocks) []string {
	var got []string
	for _, r := range mocks.Resources() {
		role := r.Str("role")
		if role == "" {
			continue
		}
		switch {
		case r.Str("repository") != "":
			got = append(got, "repository "+r.Str("repository")+" "+role+" "+r.Str("member"))
		case r.Str("bucket") != "":
			got = append(got, "bucket "+r.Str("bucket")+" "+role+" "+r.Str("member"))
		case r.Str("serviceAccountId") != "":
			got = append(got, "impersonate "+strings.TrimPrefix(r.Str("serviceAccountId"), "projects/"+testProject+"/serviceAccounts/")+" "+role+" "+r.Str("member"))
		default:
			got = append(got, "project "+r.Str("project")+" "+role+" "+r.Str("member"))
		}
	}
	slices.Sort(got)
	return got
}

// readOnlyRoles are the predefined roles whose permissions only read (get,
// list, watch): what a pull request's preview, which runs the pull
// request's own code, may hold. See PreviewProjectRoles for why they suffice.
var readOnlyRoles = []string{"roles/container.clusterViewer", "roles/storage.objectViewer", "roles/iam.workloadIdentityUser"}

// TestCIIdentityGrantsPreviewsReadOnly: the deploy account can push the
// image, write the state and manage workloads; the preview account can read
// the state and the cluster's objects and nothing else: no push, no state
// write (a preview takes no lock on a gs:// backend), no cluster write (the
// Kubernetes provider falls back to a client-side preview on 403).
func TestCIIdentityGrantsPreviewsReadOnly(t *testing.T) {
	ci := githubCI
	ci.StateBucket = "planets-pulumi-state"
	mocks, _ := declareCIIdentity(t, ci)
	deploy, preview := "serviceAccount:"+deployEmail, "serviceAccount:"+previewEmail
	want := []string{
		"project " + testProject + " roles/container.clusterViewer " + deploy,
		"repository projects/" + testProject + "/locations/europe-west6/repositories/mlops roles/artifactregistry.writer " + deploy,
		"bucket planets-pulumi-state roles/storage.objectUser " + deploy,
		"project " + testProject + " roles/container.clusterViewer " + preview,
		"bucket planets-pulumi-state roles/storage.objectViewer " + preview,
		"impersonate " + deployEmail + " roles/iam.workloadIdentityUser principalSet://iam.googleapis.com/" + ciPool + "/attribute.job_workflow_ref/acme/planets/.github/workflows/deploy.yml@refs/heads/main",
		"impersonate " + previewEmail + " roles/iam.workloadIdentityUser principalSet://iam.googleapis.com/" + ciPool + "/attribute.repository_id/123456789",
	}
	slices.Sort(want)
	got := grantsOf(mocks)
	if !slices.Equal(got, want) {
		t.Errorf("grants:\n  got  %s\n  want %s", strings.Join(got, "\n       "), strings.Join(want, "\n       "))
	}
	for _, g := range got {
		f := strings.Fields(g)
		if f[3] == preview && !slices.Contains(readOnlyRoles, f[2]) {
			t.Errorf("the preview account holds %s, which writes", f[2])
		}
	}
}

// token is a CI platform's OIDC token, its claims as strings (GitHub and
// GitLab send ids as strings too).
type token map[string]string

// exchange evaluates the provider's attribute condition and mapping, as
// declared, with a real CEL implementation, as Security Token Service does
// for a token: it returns the mapped attributes, or nil when the condition
// refuses the token. The expressions use only standard CEL (no Google
// extension), so cel-go evaluates them as Google does.
func exchange(t *testing.T, provider mocktest.Resource, claims token) map[string]string {
	t.Helper()
	env, err := cel.NewEnv(cel.Variable("assertion", cel.MapType(cel.StringType, cel.StringType)))
	if err != nil {
		t.Fatal(err)
	}
	eval := func(expr string) any {
		t.Helper()
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%q does not compile: %v", expr, iss.Err())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := prg.Eval(map[string]any{"assertion": map[string]string(claims)})
		if err != nil {
			t.Fatalf("%q on %v: %v", expr, claims, err)
		}
		return out.Value()
	}
	if ok, isBool := eval(provider.Str("attributeCondition")).(bool); !isBool || !ok {
		return nil
	}
	attributes := map[string]string{}
	for k, v := range provider.Input("attributeMapping").ObjectValue() {
		s, ok := eval(v.StringValue()).(string)
		if !ok {
			t.Fatalf("mapping %s = %q is not a string", k, v.StringValue())
		}
		attributes[string(k)] = s
	}
	return attributes
}

// impersonable lists the accounts whose workloadIdentityUser binding admits
// a principal with these attributes.
func impersonable(mocks *mocktest.Mocks, attributes map[string]string) []string {
	var out []string
	for _, b := range mocks.OfType("gcp:serviceaccount/iAMMember:IAMMember") {
		rest, ok := strings.CutPrefix(b.Str("member"), "principalSet://iam.googleapis.com/"+ciPool+"/attribute.")
		if !ok || b.Str("role") != workloadIdentityUserRole {
			continue
		}
		name, value, _ := strings.Cut(rest, "/")
		if v, ok := attributes["attribute."+name]; ok && v == value {
			out = append(out, strings.TrimPrefix(b.Str("serviceAccountId"), "projects/"+testProject+"/serviceAccounts/"))
		}
	}
	slices.Sort(out)
	return out
}

// maxSubject is Google's limit on a mapped google.subject, in bytes.
const maxSubject = 127

// TestCIIdentityOnlyTheDefaultBranchDeploys runs tokens of every kind of
// pipeline through the declared condition, mapping and bindings: the
// default branch (GitHub: refs/heads/main; GitLab: main, protected) may
// deploy, every other pipeline of the repository may only preview, and
// another repository, also one that took over the name, gets nothing. The
// mapped subject stays within 127 bytes with the longest names.
func TestCIIdentityOnlyTheDefaultBranchDeploys(t *testing.T) {
	longName := strings.Repeat("n", 100)
	longBranch := "feature/" + strings.Repeat("b", 240)
	maxID := "9223372036854775807"
	both, previewOnly := []string{deployEmail, previewEmail}, []string{previewEmail}
	github := func(kv ...string) token {
		tok := token{
			"repository": "acme/planets", "repository_id": "123456789", "repository_owner_id": "555",
			"ref": "refs/heads/main", "ref_type": "branch", "sub": "repo:acme/planets:ref:refs/heads/main",
			"run_id": "9876543210", "run_attempt": "1", "event_name": "push",
			"environment": "dev",
		}
		for i := 0; i < len(kv); i += 2 {
			tok[kv[i]] = kv[i+1]
		}
		if _, ok := tok["job_workflow_ref"]; !ok {
			// deploy.yml, read at the ref the run is for.
			tok["job_workflow_ref"] = "acme/planets/.github/workflows/deploy.yml@" + tok["ref"]
		}
		return tok
	}
	gitlab := func(kv ...string) token {
		tok := token{
			"project_path": "data-science/planets", "project_id": "42", "namespace_id": "7",
			"ref": "main", "ref_type": "branch", "ref_protected": "true",
			"sub":         "project_path:data-science/planets:ref_type:branch:ref:main",
			"pipeline_id": "1234567", "job_id": "7654321", "pipeline_source": "push",
		}
		for i := 0; i < len(kv); i += 2 {
			tok[kv[i]] = kv[i+1]
		}
		return tok
	}
	for _, tc := range []struct {
		name string
		ci   CIIdentityArgs
		tok  token
		want []string // nil: refused by the attribute condition
	}{
		{"github push to main", githubCI, github(), both},
		{"github deploy job in the dev environment", githubCI, github("sub", "repo:acme/planets:environment:dev", "environment", "dev"), both},
		{"github manual run of deploy on main", githubCI, github("event_name", "workflow_dispatch"), both},
		{"github pull request", githubCI, github("ref", "refs/pull/7/merge", "sub", "repo:acme/planets:pull_request", "event_name", "pull_request",
			"job_workflow_ref", "acme/planets/.github/workflows/pull-request.yml@refs/pull/7/merge"), previewOnly},
		// Runs on the default branch that carry its ref but are not the deploy workflow.
		{"github scheduled workflow on main", githubCI, github("event_name", "schedule", "sub", "repo:acme/planets:ref:refs/heads/main",
			"job_workflow_ref", "acme/planets/.github/workflows/nightly.yml@refs/heads/main"), previewOnly},
		{"github pull_request_target on main", githubCI, github("event_name", "pull_request_target", "sub", "repo:acme/planets:pull_request",
			"job_workflow_ref", "acme/planets/.github/workflows/label.yml@refs/heads/main"), previewOnly},
		{"github workflow_run on main", githubCI, github("event_name", "workflow_run",
			"job_workflow_ref", "acme/planets/.github/workflows/after-tests.yml@refs/heads/main"), previewOnly},
		{"github issue_comment on main", githubCI, github("event_name", "issue_comment",
			"job_workflow_ref", "acme/planets/.github/workflows/chatops.yml@refs/heads/main"), previewOnly},
		{"github deploy workflow run on another branch", githubCI, github("event_name", "workflow_dispatch", "ref", "refs/heads/feature",
			"sub", "repo:acme/planets:environment:dev", "job_workflow_ref", "acme/planets/.github/workflows/deploy.yml@refs/heads/feature"), previewOnly},
		{"github deploy workflow of another repository called from main", githubCI, github(
			"job_workflow_ref", "mallory/tools/.github/workflows/deploy.yml@refs/heads/main"), previewOnly},
		{"github push to another branch", githubCI, github("ref", "refs/heads/feature", "sub", "repo:acme/planets:ref:refs/heads/feature"), previewOnly},
		{"github environment dev from another branch", githubCI, github("ref", "refs/heads/feature", "environment", "dev", "sub", "repo:acme/planets:environment:dev"), previewOnly},
		{"github branch named like main elsewhere", githubCI, github("ref", "refs/heads/x/refs/heads/main"), previewOnly},
		{"github tag main", githubCI, github("ref", "refs/tags/main", "ref_type", "tag"), previewOnly},
		{"github long names", githubCI, github("ref", "refs/heads/"+longBranch, "run_id", maxID, "run_attempt", maxID), previewOnly},
		{"github another repository", githubCI, github("repository", "mallory/planets", "repository_id", "987"), nil},
		{"github the name taken over by another repository", githubCI, github("repository_id", "987"), nil},
		{"github the id with another name", githubCI, github("repository", "acme/other"), nil},
		{"gitlab push to protected main", gitlabCI, gitlab(), both},
		{"gitlab run pipeline on protected main", gitlabCI, gitlab("pipeline_source", "web"), both},
		{"gitlab main not protected", gitlabCI, gitlab("ref_protected", "false"), previewOnly},
		{"gitlab scheduled pipeline on main", gitlabCI, gitlab("pipeline_source", "schedule"), previewOnly},
		{"gitlab triggered pipeline on main", gitlabCI, gitlab("pipeline_source", "trigger"), previewOnly},
		{"gitlab downstream pipeline on main", gitlabCI, gitlab("pipeline_source", "pipeline"), previewOnly},
		{"gitlab merge request", gitlabCI, gitlab("ref", "feature", "ref_protected", "false", "pipeline_source", "merge_request_event"), previewOnly},
		{"gitlab another protected branch", gitlabCI, gitlab("ref", "release"), previewOnly},
		{"gitlab protected tag main", gitlabCI, gitlab("ref_type", "tag"), previewOnly},
		{"gitlab long names", gitlabCI, gitlab("ref", longBranch, "ref_protected", "false",
			"sub", "project_path:data-science/"+longName+":ref_type:branch:ref:"+longBranch,
			"pipeline_id", maxID, "job_id", maxID, "project_id", "42"), previewOnly},
		{"gitlab another project", gitlabCI, gitlab("project_path", "mallory/planets", "project_id", "99"), nil},
		{"gitlab the path taken over by another project", gitlabCI, gitlab("project_id", "99"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mocks, _ := declareCIIdentity(t, tc.ci)
			provider := mocks.One(t, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
			attributes := exchange(t, provider, tc.tok)
			if tc.want == nil {
				if attributes != nil {
					t.Fatalf("token admitted (attributes %v); want it refused by the attribute condition", attributes)
				}
				return
			}
			if attributes == nil {
				t.Fatalf("token refused by the attribute condition %q", provider.Str("attributeCondition"))
			}
			if s := attributes["google.subject"]; s == "" || len(s) > maxSubject {
				t.Errorf("google.subject %q is %d bytes; Google takes 1 to %d", s, len(s), maxSubject)
			}
			for k, v := range attributes {
				if k != "google.subject" && (!strings.HasPrefix(k, "attribute.") || v == "") {
					t.Errorf("mapped %s = %q", k, v)
				}
			}
			if got := impersonable(mocks, attributes); !slices.Equal(got, tc.want) {
				t.Errorf("may impersonate %v, want %v (attributes %v)", got, tc.want, attributes)
			}
		})
	}
}

func TestCIIdentityForGitLabTrustsTheInstanceAndProject(t *testing.T) {
	mocks, _ := declareCIIdentity(t, gitlabCI)
	provider := mocks.One(t, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
	if c := provider.Str("attributeCondition"); c != `assertion.project_id == "42" && assertion.project_path == "data-science/planets"` {
		t.Errorf("attribute condition %q", c)
	}
	if issuer := provider.Str("oidc.issuerUri"); issuer != "https://gitlab.example.com" {
		t.Errorf("issuer %q", issuer)
	}
	if id := provider.Str("workloadIdentityPoolProviderId"); id != "gitlab" {
		t.Errorf("provider id %q", id)
	}
	var members []string
	for _, b := range mocks.OfType("gcp:serviceaccount/iAMMember:IAMMember") {
		members = append(members, b.Str("serviceAccountId")+" "+b.Str("member"))
	}
	slices.Sort(members)
	want := []string{
		fmt.Sprintf("projects/%s/serviceAccounts/%s principalSet://iam.googleapis.com/%s/attribute.protected_branch/main", testProject, deployEmail, ciPool),
		fmt.Sprintf("projects/%s/serviceAccounts/%s principalSet://iam.googleapis.com/%s/attribute.project_id/42", testProject, previewEmail, ciPool),
	}
	if !slices.Equal(members, want) {
		t.Errorf("bindings\n  %s\nwant\n  %s", strings.Join(members, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestCIIdentityWithoutFederationHasNoPool(t *testing.T) {
	mocks, got := declareCIIdentity(t, CIIdentityArgs{Project: testProject, ServiceAccountID: "mlops-ci", PreviewServiceAccountID: "mlops-preview", Platform: CINone})
	for _, typ := range []string{
		"gcp:iam/workloadIdentityPool:WorkloadIdentityPool",
		"gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider",
		"gcp:serviceaccount/iAMMember:IAMMember",
	} {
		if n := len(mocks.OfType(typ)); n != 0 {
			t.Errorf("%d %s without federation", n, typ)
		}
	}
	if got["provider"] != "" {
		t.Errorf("provider output %q", got["provider"])
	}
}

func TestCIIdentityJSONKeyOnlyWhenAsked(t *testing.T) {
	ci := githubCI
	ci.JSONKey = true
	mocks, got := declareCIIdentity(t, ci)
	key := mocks.One(t, "gcp:serviceaccount/key:Key")
	if got["key"] == "" {
		t.Errorf("no key output")
	}
	if id := key.Str("serviceAccountId"); id != "projects/"+testProject+"/serviceAccounts/"+deployEmail {
		t.Errorf("key of %q, want the deploy account's", id)
	}
}
