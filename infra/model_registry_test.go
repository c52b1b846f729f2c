package infra

import (
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func TestModelRegistryIsADockerRepositoryThatCleansUpOldModels(t *testing.T) {
	var url string
	mocks := declare(t, func(ctx *pulumi.Context) error {
		registry, err := NewModelRegistry(ctx, "registry", &ModelRegistryArgs{
			Project: testProject, Region: "europe-west6", RepositoryID: "mlops", KeepImages: 7,
		})
		if err != nil {
			return err
		}
		url = resolve[string](t, registry.URL)
		return nil
	})
	requireParented(t, mocks, "mlops:infra:ModelRegistry")
	repo := mocks.One(t, "gcp:artifactregistry/repository:Repository")
	for path, want := range map[string]string{
		"format": "DOCKER", "location": "europe-west6", "repositoryId": "mlops", "project": testProject,
	} {
		if got := repo.Str(path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if v := repo.Input("cleanupPolicyDryRun"); !v.IsBool() || v.BoolValue() {
		t.Errorf("cleanup is a dry run: %v", v)
	}
	policies := repo.Input("cleanupPolicies").ArrayValue()
	if len(policies) != 2 {
		t.Fatalf("cleanup policies: %v", policies)
	}
	del, keep := policies[0].ObjectValue(), policies[1].ObjectValue()
	// Only versions older than 30 days may go: the newest N alone need not
	// hold the running image (a failed rollout's push, a rollback).
	condition := del["condition"].ObjectValue()
	if del["id"].StringValue() != "delete-old-models" || del["action"].StringValue() != "DELETE" || len(condition) != 2 ||
		condition["tagState"].StringValue() != "ANY" || !condition["olderThan"].IsString() || condition["olderThan"].StringValue() != "2592000s" {
		t.Errorf("first policy %v, want DELETE of any tag state older than 2592000s (30 days)", del)
	}
	if keep["id"].StringValue() != "keep-recent-models" || keep["action"].StringValue() != "KEEP" || keep["mostRecentVersions"].ObjectValue()["keepCount"].NumberValue() != 7 {
		t.Errorf("second policy %v, want KEEP of the 7 most recent", keep)
	}
	if url != "europe-west6-docker.pkg.dev/"+testProject+"/mlops" {
		t.Errorf("URL = %q", url)
	}
}
