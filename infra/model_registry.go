package infra

import (
	"fmt"
	"time"

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

// cleanupMinAge is how old a version must be before the cleanup may delete
// it, whatever KeepImages says. The newest KeepImages alone do not protect
// the running image: versions that were pushed but not deployed (a rollout
// that failed after its push, a rollback to an older model's digest, which
// makes no new version) push it out of the newest N, and the next node
// replacement or rollback then cannot pull it. A month is longer than any
// of those stays unnoticed.
const cleanupMinAge = 30 * 24 * time.Hour

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
		// Cleanup deletes the versions older than cleanupMinAge except the
		// most recent KeepImages: a version matching both a delete and a
		// keep policy is kept (Artifact Registry, "Cleanup policy
		// overview"), so a version goes only when it is both old and not
		// among the newest.
		CleanupPolicyDryRun: pulumi.Bool(false),
		CleanupPolicies: artifactregistry.RepositoryCleanupPolicyArray{
			&artifactregistry.RepositoryCleanupPolicyArgs{
				Id:     pulumi.String("delete-old-models"),
				Action: pulumi.String("DELETE"),
				Condition: &artifactregistry.RepositoryCleanupPolicyConditionArgs{
					TagState: pulumi.String("ANY"),
					// The API's Duration: whole seconds with an s suffix.
					OlderThan: pulumi.String(fmt.Sprintf("%ds", int64(cleanupMinAge.Seconds()))),
				},
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
