package infra

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/iam"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/projects"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/storage"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/config"
)

// CIProjectRoles are the only project-wide roles of the CI service account:
// get cluster credentials and manage workloads in the cluster. Pushing images
// is granted on the model repository alone, state access on the state bucket
// alone. Nothing here can grant roles or create keys, so identity changes
// stay with an admin's `pulumi up`.
var CIProjectRoles = []string{"roles/container.developer"}

const (
	// ciRegistryRole lets CI push (and overwrite tags) in the model repository.
	ciRegistryRole = "roles/artifactregistry.writer"
	// ciStateRole lets CI read and write the Pulumi state objects, and
	// nothing else in the bucket (no IAM, no bucket settings).
	ciStateRole = "roles/storage.objectUser"
	// workloadIdentityUserRole lets federated CI identities impersonate the account.
	workloadIdentityUserRole = "roles/iam.workloadIdentityUser"
)

// CIIdentity is the identity CI deploys with: a service account with least
// privilege and, keyless by default, a Workload Identity pool and provider
// that admit only the configured repository.
type CIIdentity struct {
	pulumi.ResourceState

	Account *serviceaccount.Account
	// Pool is the Workload Identity pool; nil with ciPlatform none.
	Pool *iam.WorkloadIdentityPool
	// WorkloadIdentityProvider is the provider's full resource name, what the
	// GitHub auth action and GitLab's token audience need; empty without one.
	WorkloadIdentityProvider pulumi.StringOutput
	// Key is the base64 JSON key, a secret; empty unless asked for.
	Key pulumi.StringOutput
}

// CIIdentityArgs are the inputs of CIIdentity.
type CIIdentityArgs struct {
	Project    string
	CI         config.CI
	Repository *artifactregistry.Repository
}

// NewCIIdentity declares the account, its bindings and the federation.
func NewCIIdentity(ctx *pulumi.Context, name string, args *CIIdentityArgs, opts ...pulumi.ResourceOption) (*CIIdentity, error) {
	c := &CIIdentity{}
	if err := ctx.RegisterComponentResource("mlops:infra:CIIdentity", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)

	account, err := serviceaccount.NewAccount(ctx, name, &serviceaccount.AccountArgs{
		Project:     pulumi.String(args.Project),
		AccountId:   pulumi.String(args.CI.ServiceAccountID),
		DisplayName: pulumi.String("Model deployments from CI"),
		Description: pulumi.String("Deploys the model with pulumi up; cannot change IAM."),
	}, parent)
	if err != nil {
		return nil, err
	}
	c.Account = account

	for _, role := range CIProjectRoles {
		if _, err := projects.NewIAMMember(ctx, name+"-"+roleSuffix(role), &projects.IAMMemberArgs{
			Project: pulumi.String(args.Project),
			Role:    pulumi.String(role),
			Member:  account.Member,
		}, parent); err != nil {
			return nil, err
		}
	}
	if _, err := artifactregistry.NewRepositoryIamMember(ctx, name+"-registry-writer", &artifactregistry.RepositoryIamMemberArgs{
		Project:    pulumi.String(args.Project),
		Location:   args.Repository.Location,
		Repository: args.Repository.Name,
		Role:       pulumi.String(ciRegistryRole),
		Member:     account.Member,
	}, parent); err != nil {
		return nil, err
	}
	if args.CI.StateBucket != "" {
		if _, err := storage.NewBucketIAMMember(ctx, name+"-state", &storage.BucketIAMMemberArgs{
			Bucket: pulumi.String(args.CI.StateBucket),
			Role:   pulumi.String(ciStateRole),
			Member: account.Member,
		}, parent); err != nil {
			return nil, err
		}
	}

	c.WorkloadIdentityProvider = pulumi.String("").ToStringOutput()
	if args.CI.Platform != config.CINone {
		provider, err := c.federate(ctx, name, args, parent)
		if err != nil {
			return nil, err
		}
		c.WorkloadIdentityProvider = provider.Name
	}

	c.Key = pulumi.ToSecret(pulumi.String("")).(pulumi.StringOutput)
	if args.CI.JSONKey {
		key, err := serviceaccount.NewKey(ctx, name+"-key", &serviceaccount.KeyArgs{
			ServiceAccountId: account.Name,
		}, parent, pulumi.AdditionalSecretOutputs([]string{"privateKey"}))
		if err != nil {
			return nil, err
		}
		c.Key = pulumi.ToSecret(key.PrivateKey).(pulumi.StringOutput)
	}

	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"email":                    account.Email,
		"workloadIdentityProvider": c.WorkloadIdentityProvider,
	})
}

// oidcIssuer describes how one CI platform's OIDC tokens are trusted.
type oidcIssuer struct {
	issuer string
	// repositoryClaim is the token claim that names the repository.
	repositoryClaim string
	mapping         map[string]string
}

func issuerFor(ci config.CI) oidcIssuer {
	if ci.Platform == config.CIGitLab {
		return oidcIssuer{
			issuer:          ci.GitLabURL,
			repositoryClaim: "project_path",
			mapping: map[string]string{
				"google.subject":         "assertion.sub",
				"attribute.project_path": "assertion.project_path",
				"attribute.ref":          "assertion.ref",
			},
		}
	}
	return oidcIssuer{
		issuer:          "https://token.actions.githubusercontent.com",
		repositoryClaim: "repository",
		mapping: map[string]string{
			"google.subject":       "assertion.sub",
			"attribute.repository": "assertion.repository",
			"attribute.ref":        "assertion.ref",
		},
	}
}

// federate declares the pool and provider for the CI platform and lets only
// the configured repository impersonate the account.
func (c *CIIdentity) federate(ctx *pulumi.Context, name string, args *CIIdentityArgs, parent pulumi.ResourceOption) (*iam.WorkloadIdentityPoolProvider, error) {
	oidc := issuerFor(args.CI)
	// Pool ids are 4-32 characters and deleted pools keep their id for 30
	// days, so derive it from the account id, which is unique per project.
	poolID := strings.TrimRight(truncate(args.CI.ServiceAccountID, 27), "-") + "-pool"
	pool, err := iam.NewWorkloadIdentityPool(ctx, name+"-pool", &iam.WorkloadIdentityPoolArgs{
		Project:                pulumi.String(args.Project),
		WorkloadIdentityPoolId: pulumi.String(poolID),
		DisplayName:            pulumi.String("CI deployments"),
		Description:            pulumi.String("OIDC tokens of the CI that deploys the model."),
	}, parent)
	if err != nil {
		return nil, err
	}
	c.Pool = pool
	provider, err := iam.NewWorkloadIdentityPoolProvider(ctx, name+"-"+string(args.CI.Platform), &iam.WorkloadIdentityPoolProviderArgs{
		Project:                        pulumi.String(args.Project),
		WorkloadIdentityPoolId:         pool.WorkloadIdentityPoolId,
		WorkloadIdentityPoolProviderId: pulumi.String(string(args.CI.Platform)),
		DisplayName:                    pulumi.String(string(args.CI.Platform)),
		AttributeMapping:               pulumi.ToStringMap(oidc.mapping),
		// Tokens of every other repository on the platform are refused here,
		// before any binding is even looked at.
		AttributeCondition: pulumi.String(fmt.Sprintf("assertion.%s == %q", oidc.repositoryClaim, args.CI.Repository)),
		Oidc:               &iam.WorkloadIdentityPoolProviderOidcArgs{IssuerUri: pulumi.String(oidc.issuer)},
	}, parent)
	if err != nil {
		return nil, err
	}
	if _, err := serviceaccount.NewIAMMember(ctx, name+"-workload-identity-user", &serviceaccount.IAMMemberArgs{
		ServiceAccountId: c.Account.Name,
		Role:             pulumi.String(workloadIdentityUserRole),
		Member: pulumi.Sprintf("principalSet://iam.googleapis.com/%s/attribute.%s/%s",
			pool.Name, oidc.repositoryClaim, args.CI.Repository),
	}, parent); err != nil {
		return nil, err
	}
	return provider, nil
}

// roleSuffix turns roles/container.developer into container-developer.
func roleSuffix(role string) string {
	return strings.ReplaceAll(strings.TrimPrefix(role, "roles/"), ".", "-")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
