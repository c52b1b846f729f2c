package infra

import (
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func TestProjectAPIsEnablesEachAPIAndKeepsItOnDestroy(t *testing.T) {
	mocks := declare(t, func(ctx *pulumi.Context) error {
		_, err := NewProjectAPIs(ctx, "apis", &ProjectAPIsArgs{Project: testProject})
		return err
	})
	requireParented(t, mocks, "mlops:infra:ProjectAPIs")
	var enabled []string
	for _, svc := range mocks.OfType("gcp:projects/service:Service") {
		enabled = append(enabled, svc.Str("service"))
		if svc.Str("project") != testProject {
			t.Errorf("%s enabled in project %q", svc.Str("service"), svc.Str("project"))
		}
		if v := svc.Input("disableOnDestroy"); !v.IsBool() || v.BoolValue() {
			t.Errorf("%s: disableOnDestroy = %v, want false", svc.Str("service"), v)
		}
	}
	slices.Sort(enabled)
	want := []string{
		"artifactregistry.googleapis.com", "cloudresourcemanager.googleapis.com", "compute.googleapis.com", "container.googleapis.com",
		"iam.googleapis.com", "iamcredentials.googleapis.com", "sts.googleapis.com",
	}
	if !slices.Equal(enabled, want) {
		t.Errorf("enabled %v, want %v", enabled, want)
	}
}

// Required reaches every descendant of a component, not just the component:
// DependsOn on a component never made its children wait.
func TestRequiredMakesEveryDescendantWaitForEveryService(t *testing.T) {
	mocks := declare(t, func(ctx *pulumi.Context) error {
		apis, err := NewProjectAPIs(ctx, "apis", &ProjectAPIsArgs{Project: testProject})
		if err != nil {
			return err
		}
		_, err = NewModelRegistry(ctx, "registry", &ModelRegistryArgs{
			Project: testProject, Region: "europe-west6", RepositoryID: "mlops", KeepImages: 10,
		}, apis.Required())
		return err
	})
	repo := mocks.One(t, "gcp:artifactregistry/repository:Repository")
	for _, api := range RequiredAPIs {
		urn := "urn:pulumi:dev::mlops::mlops:infra:ProjectAPIs$gcp:projects/service:Service::apis-" + strings.TrimSuffix(api, ".googleapis.com")
		if !slices.Contains(repo.DependsOn, urn) {
			t.Errorf("the repository does not wait for %s: depends on %q", api, repo.DependsOn)
		}
	}
}
