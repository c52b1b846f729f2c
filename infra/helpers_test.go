package infra

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

const testProject = "planets-mlops-dev"

// declare runs body under mocks and returns what it declared.
func declare(t *testing.T, body func(ctx *pulumi.Context) error) *mocktest.Mocks {
	t.Helper()
	mocks := &mocktest.Mocks{}
	if err := mocks.Run(body, map[string]string{}); err != nil {
		t.Fatalf("declaring: %v", err)
	}
	return mocks
}

// requireParented fails unless every custom resource is a child of the one
// component of type component.
func requireParented(t *testing.T, mocks *mocktest.Mocks, component string) {
	t.Helper()
	mocks.One(t, component)
	for _, r := range mocks.Resources() {
		if r.Custom && !strings.Contains(r.Parent, "::"+component+"::") && !strings.Contains(r.Parent, "$"+component+"::") {
			t.Errorf("%s %s is not parented to the %s (parent %q)", r.Type, r.Name, component, r.Parent)
		}
	}
}

// resolve waits for an output's value inside a program body.
func resolve[T any](t *testing.T, out pulumi.Output) T {
	t.Helper()
	ch := make(chan any, 1)
	out.ApplyT(func(v any) any { ch <- v; return v })
	return (<-ch).(T)
}

// devCluster is the cluster of the dev stack (Pulumi.yaml's defaults and
// Pulumi.dev.yaml) as internal/program maps it, less the repository, which
// a test declares (testRepository) and gives it with withRepository.
var devCluster = GKEClusterArgs{
	Project: testProject, Region: "europe-west6", Zone: "europe-west6-a",
	ClusterName: "mlops-kubernetes", MachineType: "e2-standard-2", NodeCount: 2,
	ReleaseChannel: "REGULAR",
}

// withRepository is the cluster args pulling from repo.
func withRepository(args GKEClusterArgs, repo *artifactregistry.Repository) *GKEClusterArgs {
	args.Repository = repo
	return &args
}

// testRepository is a model repository for components that grant on one.
func testRepository(ctx *pulumi.Context) (*artifactregistry.Repository, error) {
	return artifactregistry.NewRepository(ctx, "repo", &artifactregistry.RepositoryArgs{
		Project: pulumi.String(testProject), Location: pulumi.String("europe-west6"),
		RepositoryId: pulumi.String("mlops"), Format: pulumi.String("DOCKER"),
	})
}
