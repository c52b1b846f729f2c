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
)

// CIProjectRoles are the only project-wide roles of the deploy service
// account: find the project's clusters and get credentials for them
// (container.clusters.get and list), and no Kubernetes permission at all:
// inside the cluster it may do what DeployAccess's RBAC grants, the model's
// workloads in the model's namespace and nothing else (no Secrets, no
// pods/exec, no other namespace, no other cluster of the project).
// roles/container.developer, project-wide, would reach every namespace of
// every cluster of the project, kube-system included. Pushing images is
// granted on the model repository alone, state access on the state bucket
// alone. Nothing here can grant roles, create keys or change the cluster,
// node pool, registry settings, APIs or RBAC: those changes stay with an
// admin's `pulumi up` (internal/planreview lists them on the pull request).
var CIProjectRoles = []string{"roles/container.clusterViewer"}

// PreviewProjectRoles are the only project-wide roles of the preview service
// account, which runs the pull/merge request's own code: reach the cluster;
// inside it, read the model's objects (DeployAccess), change nothing. What
// `pulumi preview` of this program really needs, read from the sources of
// the pinned tools:
//
//   - The state (gs:// backend, pulumi/pkg/backend/diy): a preview reads
//     .pulumi/meta.yaml and the stack's checkpoint. diyBackend.Preview takes
//     no lock (Lock is called by Update, Import, Refresh, Destroy, stack
//     create, remove, rename and import), and apply writes no checkpoint,
//     history or backup when DryRun is set.
//     meta.yaml is written only when missing, and the admin's first login
//     wrote it. So object get and list (roles/storage.objectViewer) suffice.
//   - The cluster (pulumi-kubernetes v4.32, provider.go): Diff compares the
//     new inputs with the state's live object and calls no API. In a
//     preview, Create sends a dry-run create (POST with dryRun=All, no
//     upsert since 4.29) and Update a dry-run server-side apply (PATCH with
//     dryRun=All); the API server authorizes both like the write itself,
//     and on 403 Forbidden the provider falls back to the inputs as given
//     (`req.GetPreview() && apierrors.IsForbidden`). So read access
//     suffices; the plan is then computed client-side, without the server's
//     defaulting and admission.
//   - The image (pulumi-docker v4 Image): buildOnPreview defaults to false,
//     so a preview neither builds nor pushes and needs no registry access.
//   - Google Cloud resources: Check and Diff call no API.
var PreviewProjectRoles = []string{"roles/container.clusterViewer"}

const (
	// ciRegistryRole lets CI push (and overwrite tags) in the model repository.
	ciRegistryRole = "roles/artifactregistry.writer"
	// ciStateRole lets CI read and write the Pulumi state objects (and its
	// lock files), and nothing else in the bucket (no IAM, no bucket settings).
	ciStateRole = "roles/storage.objectUser"
	// previewStateRole lets previews read the state objects: get and list.
	previewStateRole = "roles/storage.objectViewer"
	// workloadIdentityUserRole lets federated CI identities impersonate the account.
	workloadIdentityUserRole = "roles/iam.workloadIdentityUser"
)

// CIIdentity is what CI runs as: a deploy service account that only the
// default branch's pipelines can use, a read-only preview service account for
// every other pipeline of the repository, and, keyless by default, the
// Workload Identity pool and provider that admit only that repository.
type CIIdentity struct {
	pulumi.ResourceState

	// Account deploys (pulumi up on the default branch).
	Account *serviceaccount.Account
	// PreviewAccount previews pull and merge requests: it reads, never writes.
	PreviewAccount *serviceaccount.Account
	// WorkloadIdentityProvider is the provider's full resource name, what the
	// GitHub auth action and GitLab's token audience need; empty without one.
	WorkloadIdentityProvider pulumi.StringOutput
	// Key is the deploy account's base64 JSON key, a secret; empty unless asked for.
	Key pulumi.StringOutput
}

// CIPlatform is the CI system whose OIDC tokens the Workload Identity
// provider trusts. Its value names the provider (resource and id).
type CIPlatform string

const (
	// CIGitHub trusts GitHub Actions' tokens.
	CIGitHub CIPlatform = "github"
	// CIGitLab trusts the tokens of the GitLab instance at GitLabURL.
	CIGitLab CIPlatform = "gitlab"
	// CINone federates nothing: CI authenticates some other way (JSONKey).
	CINone CIPlatform = "none"
)

// CIIdentityArgs are the inputs of CIIdentity.
type CIIdentityArgs struct {
	// Project holds the accounts, their roles and the federation.
	Project string
	// ServiceAccountID and PreviewServiceAccountID are the account ids of
	// the deploy and the preview service accounts.
	ServiceAccountID, PreviewServiceAccountID string
	// Platform is the CI whose pipelines may impersonate the accounts.
	Platform CIPlatform
	// SourceRepository is the only repository whose pipelines are admitted:
	// owner/repo on GitHub, group/project on GitLab, spelled as the
	// platform's tokens spell it.
	SourceRepository string
	// SourceRepositoryID is its numeric id (GitHub repository_id, GitLab
	// project_id), matched together with the name: a name can be freed and
	// taken by someone else.
	SourceRepositoryID string
	// DefaultBranch is the only branch whose pipelines get the deploy account.
	DefaultBranch string
	// GitLabURL is the GitLab instance that issues the tokens (CIGitLab).
	GitLabURL string
	// JSONKey asks for a key of the deploy account, for a CI without OIDC.
	JSONKey bool
	// StateBucket holds the Pulumi state; "" when it lives elsewhere, and
	// then no account is granted on it.
	StateBucket string
	// Repository is the model repository the deploy account pushes to.
	Repository *artifactregistry.Repository
}

// NewCIIdentity declares the accounts, their bindings and the federation.
func NewCIIdentity(ctx *pulumi.Context, name string, args *CIIdentityArgs, opts ...pulumi.ResourceOption) (*CIIdentity, error) {
	c := &CIIdentity{}
	if err := ctx.RegisterComponentResource("mlops:infra:CIIdentity", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)

	account, err := serviceaccount.NewAccount(ctx, name, &serviceaccount.AccountArgs{
		Project:     pulumi.String(args.Project),
		AccountId:   pulumi.String(args.ServiceAccountID),
		DisplayName: pulumi.String("Model deployments from CI"),
		Description: pulumi.String("Deploys the model with pulumi up from the default branch; cannot change IAM."),
	}, parent)
	if err != nil {
		return nil, err
	}
	c.Account = account
	preview, err := serviceaccount.NewAccount(ctx, name+"-preview", &serviceaccount.AccountArgs{
		Project:     pulumi.String(args.Project),
		AccountId:   pulumi.String(args.PreviewServiceAccountID),
		DisplayName: pulumi.String("Model previews from CI"),
		Description: pulumi.String("Runs pulumi preview for pull and merge requests; reads the state and the cluster, changes nothing."),
	}, parent)
	if err != nil {
		return nil, err
	}
	c.PreviewAccount = preview

	var projectGrants []grant
	for _, role := range CIProjectRoles {
		projectGrants = append(projectGrants, grant{name + "-" + roleSuffix(role), role, account.Member})
	}
	for _, role := range PreviewProjectRoles {
		projectGrants = append(projectGrants, grant{name + "-preview-" + roleSuffix(role), role, preview.Member})
	}
	for _, g := range projectGrants {
		if _, err := projects.NewIAMMember(ctx, g.name, &projects.IAMMemberArgs{
			Project: pulumi.String(args.Project),
			Role:    pulumi.String(g.role),
			Member:  g.member,
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
	if args.StateBucket != "" {
		for _, g := range []grant{{name + "-state", ciStateRole, account.Member}, {name + "-preview-state", previewStateRole, preview.Member}} {
			if _, err := storage.NewBucketIAMMember(ctx, g.name, &storage.BucketIAMMemberArgs{
				Bucket: pulumi.String(args.StateBucket),
				Role:   pulumi.String(g.role),
				Member: g.member,
			}, parent); err != nil {
				return nil, err
			}
		}
	}

	c.WorkloadIdentityProvider = pulumi.String("").ToStringOutput()
	if args.Platform != CINone {
		provider, err := c.federate(ctx, name, args, parent)
		if err != nil {
			return nil, err
		}
		c.WorkloadIdentityProvider = provider.Name
	}

	c.Key = pulumi.ToSecret(pulumi.String("")).(pulumi.StringOutput)
	if args.JSONKey {
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
		"previewEmail":             preview.Email,
		"workloadIdentityProvider": c.WorkloadIdentityProvider,
	})
}

// grant is one role binding of one account.
type grant struct {
	name, role string
	member     pulumi.StringOutput
}

// GitHubDeployWorkflow is the only workflow file whose jobs may deploy.
const GitHubDeployWorkflow = ".github/workflows/deploy.yml"

// oidcIssuer describes how one CI platform's OIDC tokens are trusted.
type oidcIssuer struct {
	issuer string
	// idClaim and nameClaim are the token claims with the repository's
	// numeric id and its path; the provider admits a token only when both
	// match, and each is mapped to the attribute of the same name.
	idClaim, nameClaim string
	// mapping is the attribute mapping; google.subject is built from
	// numeric claims only, so it stays under Google's 127-byte limit
	// whatever the length of the repository's or the branch's name.
	mapping map[string]string
	// deployAttribute is the mapped attribute whose value deployValue
	// (of the default branch) selects the pipelines that may deploy: those
	// of the default branch that run the deploy pipeline, not every one
	// that carries its ref.
	deployAttribute string
	deployValue     func(branch string) string
}

// issuerFor is how the tokens of args' platform are trusted.
func issuerFor(args *CIIdentityArgs) oidcIssuer {
	if args.Platform == CIGitLab {
		return oidcIssuer{
			issuer:    args.GitLabURL,
			idClaim:   "project_id",
			nameClaim: "project_path",
			mapping: map[string]string{
				// sub is project_path:<group/project>:ref_type:branch:ref:<branch>,
				// unbounded; GitLab's ids are numeric strings.
				"google.subject":         `"project_id:" + assertion.project_id + ":pipeline_id:" + assertion.pipeline_id + ":job_id:" + assertion.job_id`,
				"attribute.project_id":   "assertion.project_id",
				"attribute.project_path": "assertion.project_path",
				"attribute.ref":          "assertion.ref",
				// The branch's name when it is a protected branch, else a
				// value no branch can have (git forbids ':' in ref names).
				// A protected branch carries its ref into scheduled, API,
				// trigger and downstream pipelines too: only a push or a
				// run from the web UI (Build > Pipelines > Run pipeline)
				// maps to it, so a schedule or another project's pipeline
				// on the default branch gets the preview identity only.
				"attribute.protected_branch": `assertion.ref_type == "branch" && assertion.ref_protected == "true" && (assertion.pipeline_source == "push" || assertion.pipeline_source == "web") ? assertion.ref : ":unprotected"`,
			},
			deployAttribute: "protected_branch",
			deployValue:     func(branch string) string { return branch },
		}
	}
	return oidcIssuer{
		issuer:    "https://token.actions.githubusercontent.com",
		idClaim:   "repository_id",
		nameClaim: "repository",
		mapping: map[string]string{
			// sub (repo:<owner>/<repo>:environment:<name>, ...) can pass 127
			// bytes with long names; GitHub's run ids are numeric strings.
			"google.subject":          `"repository_id:" + assertion.repository_id + ":run_id:" + assertion.run_id + ":run_attempt:" + assertion.run_attempt`,
			"attribute.repository_id": "assertion.repository_id",
			"attribute.repository":    "assertion.repository",
			// refs/heads/<branch> for pushes and manual runs, refs/pull/<n>/merge
			// for pull requests, refs/tags/<tag> for tags.
			"attribute.ref": "assertion.ref",
			// <owner>/<repo>/<workflow file>@<ref>: the workflow the job
			// runs, at the ref it was read from. The ref alone is not
			// enough to deploy: schedule, workflow_run, issue_comment and
			// pull_request_target runs on the default branch carry its ref
			// too, in whichever workflow file triggers them, and a future
			// workflow that checks out a pull request's code would get the
			// deploy identity. Only deploy.yml read from the default branch
			// does.
			"attribute.job_workflow_ref": "assertion.job_workflow_ref",
		},
		deployAttribute: "job_workflow_ref",
		deployValue: func(branch string) string {
			return args.SourceRepository + "/" + GitHubDeployWorkflow + "@refs/heads/" + branch
		},
	}
}

// federate declares the pool and provider for the CI platform, lets the
// default branch's pipelines impersonate the deploy account and every
// pipeline of the repository the preview account.
func (c *CIIdentity) federate(ctx *pulumi.Context, name string, args *CIIdentityArgs, parent pulumi.ResourceOption) (*iam.WorkloadIdentityPoolProvider, error) {
	oidc := issuerFor(args)
	// A deleted pool keeps its id for 30 days (the API answers 409
	// ALREADY_EXISTS to a create, and the id cannot be reused until the pool
	// is purged; projects.locations.workloadIdentityPools State DELETED). So
	// the id carries the deploy account's unique id (21 digits), which GCP
	// assigns anew whenever the account is created, also under a reused
	// account id (projects.serviceAccounts, field uniqueId): after a
	// `pulumi destroy`, the next `up` creates a new account and with it a
	// pool of a new id.
	poolID := c.Account.UniqueId.ApplyT(func(uniqueID string) string {
		return workloadIdentityPoolID(args.ServiceAccountID, uniqueID)
	}).(pulumi.StringOutput)
	pool, err := iam.NewWorkloadIdentityPool(ctx, name+"-pool", &iam.WorkloadIdentityPoolArgs{
		Project:                pulumi.String(args.Project),
		WorkloadIdentityPoolId: poolID,
		DisplayName:            pulumi.String("CI deployments"),
		Description:            pulumi.String("OIDC tokens of the CI that previews and deploys the model."),
	}, parent)
	if err != nil {
		return nil, err
	}
	provider, err := iam.NewWorkloadIdentityPoolProvider(ctx, name+"-"+string(args.Platform), &iam.WorkloadIdentityPoolProviderArgs{
		Project:                        pulumi.String(args.Project),
		WorkloadIdentityPoolId:         pool.WorkloadIdentityPoolId,
		WorkloadIdentityPoolProviderId: pulumi.String(string(args.Platform)),
		DisplayName:                    pulumi.String(string(args.Platform)),
		AttributeMapping:               pulumi.ToStringMap(oidc.mapping),
		// Tokens of every other repository on the platform are refused here,
		// before any binding is even looked at: the numeric id cannot be
		// taken over by a repository that reuses a freed name, the name
		// guards against a mistyped id.
		AttributeCondition: pulumi.String(fmt.Sprintf("assertion.%s == %q && assertion.%s == %q",
			oidc.idClaim, args.SourceRepositoryID, oidc.nameClaim, args.SourceRepository)),
		Oidc: &iam.WorkloadIdentityPoolProviderOidcArgs{IssuerUri: pulumi.String(oidc.issuer)},
	}, parent)
	if err != nil {
		return nil, err
	}
	for _, b := range []struct {
		name                      string
		account                   *serviceaccount.Account
		attribute, attributeValue string
	}{
		{name + "-workload-identity-user", c.Account, oidc.deployAttribute, oidc.deployValue(args.DefaultBranch)},
		{name + "-preview-workload-identity-user", c.PreviewAccount, oidc.idClaim, args.SourceRepositoryID},
	} {
		if _, err := serviceaccount.NewIAMMember(ctx, b.name, &serviceaccount.IAMMemberArgs{
			ServiceAccountId: b.account.Name,
			Role:             pulumi.String(workloadIdentityUserRole),
			Member: pulumi.Sprintf("principalSet://iam.googleapis.com/%s/attribute.%s/%s",
				pool.Name, b.attribute, b.attributeValue),
		}, parent); err != nil {
			return nil, err
		}
	}
	return provider, nil
}

// workloadIdentityPoolID is "<start of the account id>-<its unique id>", at
// most 32 characters as pool ids must be.
func workloadIdentityPoolID(accountID, uniqueID string) string {
	const maxLen = 32
	return strings.TrimRight(truncate(accountID, maxLen-1-len(uniqueID)), "-") + "-" + uniqueID
}
