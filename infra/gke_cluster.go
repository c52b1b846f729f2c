package infra

import (
	"fmt"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/container"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/projects"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/config"
)

// NodeProjectRoles are what a node needs and no more: write logs and
// metrics. Pulling images is granted on the model repository alone.
var NodeProjectRoles = []string{"roles/container.defaultNodeServiceAccount"}

const nodeRegistryRole = "roles/artifactregistry.reader"

// cloudPlatformScope is the only OAuth scope GKE recommends; IAM roles, not
// scopes, limit what the nodes can do.
const cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// GKECluster is the GKE cluster, its nodes with their own minimal service
// account, and a Kubernetes provider to deploy into it.
type GKECluster struct {
	pulumi.ResourceState

	Cluster *container.Cluster
	// Kubeconfig authenticates with gke-gcloud-auth-plugin; it holds no
	// token, so it only changes when the cluster does. A secret all the same.
	Kubeconfig pulumi.StringOutput
	// Provider deploys into the cluster, once its nodes are up.
	Provider *kubernetes.Provider
}

// GKEClusterArgs are the inputs of GKECluster.
type GKEClusterArgs struct {
	GCP config.GCP
	// Repository is where the nodes pull the model image from.
	Repository *artifactregistry.Repository
}

// NewGKECluster declares a zonal cluster with a managed node pool, or an
// Autopilot cluster.
func NewGKECluster(ctx *pulumi.Context, name string, args *GKEClusterArgs, opts ...pulumi.ResourceOption) (*GKECluster, error) {
	c := &GKECluster{}
	if err := ctx.RegisterComponentResource("mlops:infra:GKECluster", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)
	gcp := args.GCP

	nodes, err := serviceaccount.NewAccount(ctx, name+"-nodes", &serviceaccount.AccountArgs{
		Project:     pulumi.String(gcp.Project),
		AccountId:   pulumi.String(nodeAccountID(gcp.ClusterName)),
		DisplayName: pulumi.String("GKE nodes of " + gcp.ClusterName),
	}, parent)
	if err != nil {
		return nil, err
	}
	var nodeGrants []pulumi.Resource
	for _, role := range NodeProjectRoles {
		grant, err := projects.NewIAMMember(ctx, name+"-nodes-"+roleSuffix(role), &projects.IAMMemberArgs{
			Project: pulumi.String(gcp.Project),
			Role:    pulumi.String(role),
			Member:  nodes.Member,
		}, parent)
		if err != nil {
			return nil, err
		}
		nodeGrants = append(nodeGrants, grant)
	}
	pull, err := artifactregistry.NewRepositoryIamMember(ctx, name+"-nodes-registry-reader", &artifactregistry.RepositoryIamMemberArgs{
		Project:    pulumi.String(gcp.Project),
		Location:   args.Repository.Location,
		Repository: args.Repository.Name,
		Role:       pulumi.String(nodeRegistryRole),
		Member:     nodes.Member,
	}, parent)
	if err != nil {
		return nil, err
	}
	nodeGrants = append(nodeGrants, pull)

	clusterArgs := &container.ClusterArgs{
		Project:            pulumi.String(gcp.Project),
		Name:               pulumi.String(gcp.ClusterName),
		ReleaseChannel:     &container.ClusterReleaseChannelArgs{Channel: pulumi.String(gcp.ReleaseChannel)},
		DeletionProtection: pulumi.Bool(gcp.DeletionProtection),
		WorkloadIdentityConfig: &container.ClusterWorkloadIdentityConfigArgs{
			WorkloadPool: pulumi.String(gcp.Project + ".svc.id.goog"),
		},
	}
	location := gcp.Zone
	if gcp.Autopilot {
		// Autopilot is regional and manages nodes itself; it still runs them
		// as our minimal account rather than the default compute account.
		location = gcp.Region
		clusterArgs.EnableAutopilot = pulumi.Bool(true)
		clusterArgs.ClusterAutoscaling = &container.ClusterClusterAutoscalingArgs{
			AutoProvisioningDefaults: &container.ClusterClusterAutoscalingAutoProvisioningDefaultsArgs{
				ServiceAccount: nodes.Email,
				OauthScopes:    pulumi.StringArray{pulumi.String(cloudPlatformScope)},
			},
		}
	} else {
		// The default pool cannot be managed well (its settings force
		// replacing the cluster), so it is removed for a separate pool.
		clusterArgs.RemoveDefaultNodePool = pulumi.Bool(true)
		clusterArgs.InitialNodeCount = pulumi.Int(1)
		clusterArgs.NodeConfig = &container.ClusterNodeConfigArgs{
			ServiceAccount: nodes.Email,
			OauthScopes:    pulumi.StringArray{pulumi.String(cloudPlatformScope)},
		}
	}
	clusterArgs.Location = pulumi.String(location)
	cluster, err := container.NewCluster(ctx, name, clusterArgs, parent, pulumi.DependsOn(nodeGrants))
	if err != nil {
		return nil, err
	}
	c.Cluster = cluster

	ready := []pulumi.Resource{cluster}
	if !gcp.Autopilot {
		pool, err := container.NewNodePool(ctx, name+"-pool", &container.NodePoolArgs{
			Project:   pulumi.String(gcp.Project),
			Cluster:   cluster.Name,
			Location:  pulumi.String(location),
			NodeCount: pulumi.Int(gcp.NodeCount),
			Management: &container.NodePoolManagementArgs{
				AutoRepair:  pulumi.Bool(true),
				AutoUpgrade: pulumi.Bool(true),
			},
			NodeConfig: &container.NodePoolNodeConfigArgs{
				MachineType:    pulumi.String(gcp.MachineType),
				DiskSizeGb:     pulumi.Int(30), // the image is small; 100 GB default costs for nothing
				DiskType:       pulumi.String("pd-balanced"),
				ServiceAccount: nodes.Email,
				OauthScopes:    pulumi.StringArray{pulumi.String(cloudPlatformScope)},
				// Pods see the GKE metadata server, never the node's credentials.
				WorkloadMetadataConfig: &container.NodePoolNodeConfigWorkloadMetadataConfigArgs{Mode: pulumi.String("GKE_METADATA")},
				ShieldedInstanceConfig: &container.NodePoolNodeConfigShieldedInstanceConfigArgs{
					EnableSecureBoot:          pulumi.Bool(true),
					EnableIntegrityMonitoring: pulumi.Bool(true),
				},
			},
		}, parent)
		if err != nil {
			return nil, err
		}
		ready = append(ready, pool)
	}

	contextName := fmt.Sprintf("gke_%s_%s_%s", gcp.Project, location, gcp.ClusterName)
	c.Kubeconfig = pulumi.ToSecret(pulumi.All(cluster.Endpoint, cluster.MasterAuth.ClusterCaCertificate().Elem()).ApplyT(
		func(v []any) (string, error) {
			return gkeKubeconfig(contextName, v[0].(string), v[1].(string))
		})).(pulumi.StringOutput)

	c.Provider, err = kubernetes.NewProvider(ctx, name+"-k8s", &kubernetes.ProviderArgs{
		Kubeconfig: c.Kubeconfig,
		// The kubeconfig is unknown in a preview while the cluster changes;
		// a known identifier keeps the provider (and every workload) from
		// being planned for replacement. It changes exactly when the cluster
		// is a different one.
		ClusterIdentifier: pulumi.String(contextName),
	}, parent, pulumi.DependsOn(ready))
	if err != nil {
		return nil, err
	}

	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"name":       cluster.Name,
		"kubeconfig": c.Kubeconfig,
	})
}

// nodeAccountID derives the node account id (6-30 characters) from the
// cluster name (a letter first, at most 40 characters).
func nodeAccountID(cluster string) string {
	return truncate(cluster, 23) + "-nodes"
}
