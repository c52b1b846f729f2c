package infra

import (
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/config"
	"github.com/planets-mlops/deploy/internal/mocktest"
)

func declareCIIdentity(t *testing.T, ci config.CI) (*mocktest.Mocks, map[string]string) {
	t.Helper()
	got := map[string]string{}
	mocks := declare(t, func(ctx *pulumi.Context) error {
		repo, err := testRepository(ctx)
		if err != nil {
			return err
		}
		identity, err := NewCIIdentity(ctx, "ci", &CIIdentityArgs{Project: testProject, CI: ci, Repository: repo})
		if err != nil {
			return err
		}
		got["email"] = resolve[string](t, identity.Account.Email)
		got["provider"] = resolve[string](t, identity.WorkloadIdentityProvider)
		got["key"] = resolve[string](t, identity.Key)
		if !pulumi.IsSecret(identity.Key) {
			t.Errorf("the JSON key output is not a secret")
		}
		return nil
	})
	return mocks, got
}

var githubCI = config.CI{ServiceAccountID: "mlops-ci", Platform: config.CIGitHub, Repository: "acme/planets"}

func TestCIIdentityAdmitsOnlyTheConfiguredGitHubRepository(t *testing.T) {
	mocks, got := declareCIIdentity(t, githubCI)
	for _, r := range mocks.Resources() {
		if r.Custom && r.Name != "repo" && r.Parent == "" {
			t.Errorf("%s is not parented", r.Name)
		}
	}
	provider := mocks.One(t, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
	if c := provider.Str("attributeCondition"); c != `assertion.repository == "acme/planets"` {
		t.Errorf("attribute condition %q", c)
	}
	if issuer := provider.Str("oidc.issuerUri"); issuer != "https://token.actions.githubusercontent.com" {
		t.Errorf("issuer %q", issuer)
	}
	if m := provider.Input("attributeMapping").ObjectValue(); m["attribute.repository"].StringValue() != "assertion.repository" || m["google.subject"].StringValue() != "assertion.sub" {
		t.Errorf("attribute mapping %v", m)
	}
	pool := mocks.One(t, "gcp:iam/workloadIdentityPool:WorkloadIdentityPool")
	if id := pool.Str("workloadIdentityPoolId"); id != "mlops-ci-pool" {
		t.Errorf("pool id %q", id)
	}
	binding := mocks.One(t, "gcp:serviceaccount/iAMMember:IAMMember")
	wantMember := "principalSet://iam.googleapis.com/projects/" + mocktest.ProjectNumber + "/locations/global/workloadIdentityPools/mlops-ci-pool/attribute.repository/acme/planets"
	if binding.Str("member") != wantMember || binding.Str("role") != "roles/iam.workloadIdentityUser" {
		t.Errorf("impersonation binding %s %s", binding.Str("role"), binding.Str("member"))
	}
	writer := mocks.One(t, "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
	if writer.Str("role") != "roles/artifactregistry.writer" || writer.Str("repository") != "projects/"+testProject+"/locations/europe-west6/repositories/mlops" {
		t.Errorf("registry grant %s on %s", writer.Str("role"), writer.Str("repository"))
	}
	if len(mocks.OfType("gcp:storage/bucketIAMMember:BucketIAMMember")) != 0 {
		t.Errorf("a state bucket grant without a state bucket")
	}
	if len(mocks.OfType("gcp:serviceaccount/key:Key")) != 0 || got["key"] != "" {
		t.Errorf("a JSON key was created although not asked for")
	}
	if got["email"] != "mlops-ci@"+testProject+".iam.gserviceaccount.com" {
		t.Errorf("email %q", got["email"])
	}
	if got["provider"] != "projects/"+mocktest.ProjectNumber+"/locations/global/workloadIdentityPools/mlops-ci-pool/providers/github" {
		t.Errorf("provider name %q", got["provider"])
	}
}

func TestCIIdentityForGitLabTrustsTheInstanceAndProjectPath(t *testing.T) {
	mocks, _ := declareCIIdentity(t, config.CI{
		ServiceAccountID: "mlops-ci", Platform: config.CIGitLab,
		Repository: "data-science/planets", GitLabURL: "https://gitlab.example.com",
	})
	provider := mocks.One(t, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
	if c := provider.Str("attributeCondition"); c != `assertion.project_path == "data-science/planets"` {
		t.Errorf("attribute condition %q", c)
	}
	if issuer := provider.Str("oidc.issuerUri"); issuer != "https://gitlab.example.com" {
		t.Errorf("issuer %q", issuer)
	}
	if id := provider.Str("workloadIdentityPoolProviderId"); id != "gitlab" {
		t.Errorf("provider id %q", id)
	}
	member := mocks.One(t, "gcp:serviceaccount/iAMMember:IAMMember").Str("member")
	if want := "principalSet://iam.googleapis.com/projects/" + mocktest.ProjectNumber + "/locations/global/workloadIdentityPools/mlops-ci-pool/attribute.project_path/data-science/planets"; member != want {
		t.Errorf("member %q, want %q", member, want)
	}
}

func TestCIIdentityWithoutFederationHasNoPool(t *testing.T) {
	mocks, got := declareCIIdentity(t, config.CI{ServiceAccountID: "mlops-ci", Platform: config.CINone})
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

func TestCIIdentityJSONKeyAndStateBucketOnlyWhenAsked(t *testing.T) {
	ci := githubCI
	ci.JSONKey, ci.StateBucket = true, "planets-pulumi-state"
	mocks, got := declareCIIdentity(t, ci)
	mocks.One(t, "gcp:serviceaccount/key:Key")
	if got["key"] == "" {
		t.Errorf("no key output")
	}
	state := mocks.One(t, "gcp:storage/bucketIAMMember:BucketIAMMember")
	if state.Str("bucket") != "planets-pulumi-state" || state.Str("role") != "roles/storage.objectUser" {
		t.Errorf("state grant %s on %s", state.Str("role"), state.Str("bucket"))
	}
}
