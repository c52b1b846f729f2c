package infra

import (
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ModelRegistry is the Artifact Registry repository the model images are
// pushed to, with a cleanup policy so storage does not grow forever.
type ModelRegistry struct {
	pulumi.ResourceState

	Repository *artifactregistry.Repository
	// URL is where images go: <region>-docker.pkg.dev/<project>/<repository>.
	URL pulumi.StringOutput
	// Server is the registry host, for docker login.
	Server pulumi.StringOutput
}

// ModelRegistryArgs are the inputs of ModelRegistry.
type ModelRegistryArgs struct {
	Project      string
	Region       string
	RepositoryID string
	// KeepImages is how many of the most recent images the cleanup keeps.
	KeepImages int
}

// NewModelRegistry declares the repository.
func NewModelRegistry(ctx *pulumi.Context, name string, args *ModelRegistryArgs, opts ...pulumi.ResourceOption) (*ModelRegistry, error) {
	c := &ModelRegistry{}
	if err := ctx.RegisterComponentResource("mlops:infra:ModelRegistry", name, c, opts...); err != nil {
		return nil, err
	}
	repo, err := artifactregistry.NewRepository(ctx, name, &artifactregistry.RepositoryArgs{
		Project:      pulumi.String(args.Project),
		Location:     pulumi.String(args.Region),
		RepositoryId: pulumi.String(args.RepositoryID),
		Format:       pulumi.String("DOCKER"),
		Description:  pulumi.String("Model images of the planet classifier, tagged with the model fingerprint."),
		// Tags stay mutable: rolling back to an earlier model pushes its
		// fingerprint tag again, which immutable tags would refuse.
		// Cleanup deletes every version except the most recent KeepImages;
		// KEEP wins over DELETE, so the running image (the newest) survives.
		CleanupPolicyDryRun: pulumi.Bool(false),
		CleanupPolicies: artifactregistry.RepositoryCleanupPolicyArray{
			&artifactregistry.RepositoryCleanupPolicyArgs{
				Id:        pulumi.String("delete-old-models"),
				Action:    pulumi.String("DELETE"),
				Condition: &artifactregistry.RepositoryCleanupPolicyConditionArgs{TagState: pulumi.String("ANY")},
			},
			&artifactregistry.RepositoryCleanupPolicyArgs{
				Id:                 pulumi.String("keep-recent-models"),
				Action:             pulumi.String("KEEP"),
				MostRecentVersions: &artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs{KeepCount: pulumi.Int(args.KeepImages)},
			},
		},
	}, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	c.Repository = repo
	c.Server = pulumi.Sprintf("%s-docker.pkg.dev", args.Region)
	c.URL = pulumi.Sprintf("%s-docker.pkg.dev/%s/%s", args.Region, args.Project, repo.RepositoryId)
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"url": c.URL})
}
