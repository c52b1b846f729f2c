package program

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/infra"
	"github.com/planets-mlops/deploy/internal/config"
)

// gke declares the GCP side: APIs, registry, CI identity and cluster, and,
// for a model DVC tracks (fromDVC not nil), the deploy identity's read on
// the DVC remote's bucket.
func gke(ctx *pulumi.Context, cfg *config.Config, fromDVC *dvcModel) (*deployTarget, error) {
	apis, err := infra.NewProjectAPIs(ctx, "apis", &infra.ProjectAPIsArgs{Project: cfg.GCP.Project})
	if err != nil {
		return nil, err
	}
	afterAPIs := apis.Required()

	registry, err := infra.NewModelRegistry(ctx, "registry", &infra.ModelRegistryArgs{
		Project:      cfg.GCP.Project,
		Region:       cfg.GCP.Region,
		RepositoryID: cfg.GCP.RepositoryID,
		KeepImages:   cfg.GCP.KeepImages,
	}, afterAPIs)
	if err != nil {
		return nil, err
	}

	ci, err := infra.NewCIIdentity(ctx, "ci", ciIdentityArgs(cfg.GCP.Project, cfg.CI, registry.Repository), afterAPIs)
	if err != nil {
		return nil, err
	}

	if fromDVC != nil {
		// The deploy identity fetches the model to build its image; the
		// preview identity is given nothing: a preview never fetches.
		if _, err := infra.NewModelBucketReader(ctx, "model-bucket-reader", &infra.ModelBucketReaderArgs{
			Bucket: fromDVC.remote.Bucket,
			Member: ci.Account.Member,
		}); err != nil {
			return nil, err
		}
	}

	cluster, err := infra.NewGKECluster(ctx, "cluster", gkeClusterArgs(cfg.GCP, registry.Repository), afterAPIs)
	if err != nil {
		return nil, err
	}

	if err := infra.RequireGKEVersion(ctx, cluster); err != nil {
		return nil, err
	}

	// Names taken already in the project stop a preview, and so `up`,
	// before anything is created (only for what the state does not hold).
	var collisions infra.Collisions
	collisions.Registry(registry)
	collisions.ServiceAccount(ci.Account, ci, "ciServiceAccountId")
	if ci.PreviewAccount != nil {
		collisions.ServiceAccount(ci.PreviewAccount, ci, "ciPreviewServiceAccountId")
	}
	// The Workload Identity pool is not checked: its id carries the deploy
	// account's unique id, which GCP assigns anew at every creation, so a
	// pool this stack is about to create cannot exist yet.
	collisions.ServiceAccount(cluster.Nodes, cluster, "clusterName")
	collisions.Cluster(cluster)
	if err := collisions.Check(ctx); err != nil {
		return nil, err
	}

	// The endpoint's address belongs to the project, so it survives a new
	// Service or a new cluster; only a LoadBalancer has one.
	var loadBalancerIP pulumi.StringInput
	if serviceType(cfg.Serve.Type) == infra.ServiceLoadBalancer {
		address, err := infra.NewEndpointAddress(ctx, "endpoint-address", &infra.EndpointAddressArgs{
			Project:  cfg.GCP.Project,
			Region:   cfg.GCP.Region,
			Existing: cfg.GCP.LoadBalancerAddress,
		}, afterAPIs)
		if err != nil {
			return nil, err
		}
		loadBalancerIP = address.IP
	}

	outputs := pulumi.Map{
		"clusterName":                  cluster.Cluster.Name,
		"kubeconfig":                   cluster.Kubeconfig,
		"ciServiceAccountEmail":        ci.Account.Email,
		"ciPreviewServiceAccountEmail": ci.PreviewAccount.Email,
		"workloadIdentityProvider":     ci.WorkloadIdentityProvider,
		"registryUrl":                  registry.URL,
	}
	if cfg.CI.JSONKey {
		outputs["ciServiceAccountKey"] = ci.Key
	}

	// No registry password: pulumi-docker would keep it in the state (the
	// Image's inputs), where every identity that can decrypt the state,
	// previews of any branch included, could read it. The push authenticates
	// through the docker CLI's credential helper for the registry's host
	// (`gcloud auth configure-docker <region>-docker.pkg.dev`, in CI and in
	// the README's admin steps), which mints a fresh token of whoever runs
	// `up` for every push, however long the build takes.
	return &deployTarget{
		kubernetes:     cluster.Provider,
		repository:     registry.URL,
		registryServer: registry.Server,
		registryReady:  []pulumi.Resource{registry.Repository}, // the repository itself, not the component (see ProjectAPIs.Services)
		// GKE names a Google identity's requests by its email.
		deployUser:     ci.Account.Email,
		previewUser:    ci.PreviewAccount.Email,
		loadBalancerIP: loadBalancerIP,
		outputs:        outputs,
	}, nil
}
