package infra

import (
	"fmt"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/container"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/projects"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
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
	// Nodes is the service account the nodes run as.
	Nodes *serviceaccount.Account
	// Kubeconfig authenticates with gke-gcloud-auth-plugin; it holds no
	// token, so it only changes when the cluster does. A secret all the same.
	Kubeconfig pulumi.StringOutput
	// Provider deploys into the cluster, once its nodes are up.
	Provider *kubernetes.Provider
}

// GKEClusterArgs are the inputs of GKECluster.
type GKEClusterArgs struct {
	// Project holds the cluster and the nodes' service account.
	Project string
	// ClusterName names the cluster (a letter first, at most 40
	// characters) and, cut short, the nodes' account.
	ClusterName string
	// Zone is where a Standard cluster and its node pool are; Region is
	// where an Autopilot cluster is, Autopilot being regional.
	Zone, Region string
	// Autopilot declares an Autopilot cluster, which manages its nodes:
	// MachineType, NodeCount and NodeAutoscaling are then not used.
	Autopilot bool
	// MachineType and NodeCount are the node pool's machines and size.
	MachineType string
	NodeCount   int
	// NodeAutoscaling lets the cluster autoscaler size the node pool; nil
	// keeps it at NodeCount.
	NodeAutoscaling *NodeAutoscaling
	// ReleaseChannel is the GKE release channel: RAPID, REGULAR, STABLE or
	// EXTENDED.
	ReleaseChannel string
	// DeletionProtection refuses to delete the cluster.
	DeletionProtection bool
	// DetachClusterIdentifier declares the Kubernetes provider without a
	// clusterIdentifier: the first of the two `up`s that move a stack from
	// an older identifier to ClusterIdentifier's without replacing the
	// workloads (README).
	DetachClusterIdentifier bool
	// Repository is where the nodes pull the model image from.
	Repository *artifactregistry.Repository
}

// NodeAutoscaling bounds the node pool the cluster autoscaler sizes.
type NodeAutoscaling struct {
	MinNodes, MaxNodes int
}

// NewGKECluster declares a zonal cluster with a managed node pool, or an
// Autopilot cluster.
func NewGKECluster(ctx *pulumi.Context, name string, args *GKEClusterArgs, opts ...pulumi.ResourceOption) (*GKECluster, error) {
	c := &GKECluster{}
	if err := ctx.RegisterComponentResource("mlops:infra:GKECluster", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)

	nodes, err := serviceaccount.NewAccount(ctx, name+"-nodes", &serviceaccount.AccountArgs{
		Project:     pulumi.String(args.Project),
		AccountId:   pulumi.String(nodeAccountID(args.ClusterName)),
		DisplayName: pulumi.String("GKE nodes of " + args.ClusterName),
	}, parent)
	if err != nil {
		return nil, err
	}
	c.Nodes = nodes
	var nodeGrants []pulumi.Resource
	for _, role := range NodeProjectRoles {
		grant, err := projects.NewIAMMember(ctx, name+"-nodes-"+roleSuffix(role), &projects.IAMMemberArgs{
			Project: pulumi.String(args.Project),
			Role:    pulumi.String(role),
			Member:  nodes.Member,
		}, parent)
		if err != nil {
			return nil, err
		}
		nodeGrants = append(nodeGrants, grant)
	}
	pull, err := artifactregistry.NewRepositoryIamMember(ctx, name+"-nodes-registry-reader", &artifactregistry.RepositoryIamMemberArgs{
		Project:    pulumi.String(args.Project),
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
		Project:            pulumi.String(args.Project),
		Name:               pulumi.String(args.ClusterName),
		ReleaseChannel:     &container.ClusterReleaseChannelArgs{Channel: pulumi.String(args.ReleaseChannel)},
		DeletionProtection: pulumi.Bool(args.DeletionProtection),
		WorkloadIdentityConfig: &container.ClusterWorkloadIdentityConfigArgs{
			WorkloadPool: pulumi.String(args.Project + ".svc.id.goog"),
		},
	}
	location := args.Zone
	clusterOpts := []pulumi.ResourceOption{
		parent, pulumi.DependsOn(nodeGrants),
		// A cluster name is unique in its location, so a replacement in the
		// same place must delete first (or fail with 409). The engine then
		// deletes the pool and the workloads (through the old provider,
		// while the old cluster still answers) before the cluster.
		pulumi.DeleteBeforeReplace(true),
	}
	if args.Autopilot {
		// Autopilot is regional and manages nodes itself; it still runs them
		// as our minimal account rather than the default compute account.
		location = args.Region
		clusterArgs.EnableAutopilot = pulumi.Bool(true)
		clusterArgs.ClusterAutoscaling = &container.ClusterClusterAutoscalingArgs{
			AutoProvisioningDefaults: &container.ClusterClusterAutoscalingAutoProvisioningDefaultsArgs{
				ServiceAccount: nodes.Email,
				OauthScopes:    pulumi.StringArray{pulumi.String(cloudPlatformScope)},
			},
		}
		// The program sets no nodeConfig here (the provider refuses one with
		// enableAutopilot), but GKE reports the cluster-level nodeConfig of
		// the nodes it manages, and a difference read back in it must never
		// plan a replacement of the cluster (terraform-provider-google
		// #23550; the same ignore as Standard's below). Unconfirmed on a
		// real Autopilot cluster: docs/first-real-run.md.
		clusterOpts = append(clusterOpts, pulumi.IgnoreChanges([]string{"nodeConfig"}))
	} else {
		// The default pool cannot be managed well (its settings force
		// replacing the cluster), so it is removed for a separate pool.
		clusterArgs.RemoveDefaultNodePool = pulumi.Bool(true)
		clusterArgs.InitialNodeCount = pulumi.Int(1)
		// The default pool lives for the minutes of the create only, but it
		// must not need the Compute Engine default service account, which
		// newer organisations disable (terraform-provider-google #17511).
		clusterArgs.NodeConfig = &container.ClusterNodeConfigArgs{
			ServiceAccount: nodes.Email,
			OauthScopes:    pulumi.StringArray{pulumi.String(cloudPlatformScope)},
		}
		// Once the provider has deleted the default pool, GKE reports no
		// cluster-level nodeConfig, so the read-back drops it while its
		// serviceAccount and oauthScopes are ForceNew: without this, every
		// later preview plans to replace the cluster (pulumi-gcp #744,
		// terraform-provider-google #12070; google/services/container:
		// resource_container_cluster.go reads node_config from
		// cluster.NodeConfig, node_config.go marks both fields ForceNew).
		// nodeConfig only ever configures the default pool; the nodes that
		// run the model are the separate pool below.
		clusterOpts = append(clusterOpts, pulumi.IgnoreChanges([]string{"nodeConfig"}))
	}
	clusterArgs.Location = pulumi.String(location)
	cluster, err := container.NewCluster(ctx, name, clusterArgs, clusterOpts...)
	if err != nil {
		return nil, err
	}
	c.Cluster = cluster

	ready := []pulumi.Resource{cluster}
	if !args.Autopilot {
		poolOpts := []pulumi.ResourceOption{parent}
		var autoscaling *container.NodePoolAutoscalingArgs
		if args.NodeAutoscaling != nil {
			// The cluster autoscaler owns the size: nodeCount only sizes a
			// new pool, later `up`s must not set it back. The cluster is
			// zonal, so the per-zone bounds are the pool's bounds.
			autoscaling = &container.NodePoolAutoscalingArgs{
				MinNodeCount: pulumi.Int(args.NodeAutoscaling.MinNodes),
				MaxNodeCount: pulumi.Int(args.NodeAutoscaling.MaxNodes),
			}
			poolOpts = append(poolOpts, pulumi.IgnoreChanges([]string{"nodeCount"}))
		}
		pool, err := container.NewNodePool(ctx, name+"-pool", &container.NodePoolArgs{
			Project:     pulumi.String(args.Project),
			Cluster:     cluster.Name,
			Location:    pulumi.String(location),
			NodeCount:   pulumi.Int(args.NodeCount),
			Autoscaling: autoscaling,
			Management: &container.NodePoolManagementArgs{
				AutoRepair:  pulumi.Bool(true),
				AutoUpgrade: pulumi.Bool(true),
			},
			NodeConfig: &container.NodePoolNodeConfigArgs{
				MachineType:    pulumi.String(args.MachineType),
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
		}, poolOpts...)
		if err != nil {
			return nil, err
		}
		ready = append(ready, pool)
	}

	contextName := fmt.Sprintf("gke_%s_%s_%s", args.Project, location, args.ClusterName)
	ca := cluster.MasterAuth.ClusterCaCertificate().Elem()
	c.Kubeconfig = pulumi.ToSecret(pulumi.All(cluster.Endpoint, ca).ApplyT(
		func(v []any) (string, error) {
			return gkeKubeconfig(contextName, v[0].(string), v[1].(string))
		})).(pulumi.StringOutput)

	providerArgs := &kubernetes.ProviderArgs{Kubeconfig: c.Kubeconfig}
	if !args.DetachClusterIdentifier {
		// The kubeconfig is unknown in a preview while the cluster changes
		// at all; the identifier stays known unless the cluster is a
		// different one, so an update of the cluster replaces nothing.
		providerArgs.ClusterIdentifier = ClusterIdentifier(cluster)
	}
	c.Provider, err = kubernetes.NewProvider(ctx, name+"-k8s", providerArgs, parent, pulumi.DependsOn(ready))
	if err != nil {
		return nil, err
	}

	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"name":       cluster.Name,
		"kubeconfig": c.Kubeconfig,
	})
}

// ClusterIdentifier names the physical cluster for the Kubernetes provider:
// its DNS endpoint (controlPlaneEndpointsConfig.dnsEndpointConfig.endpoint,
// gke-<cluster uid>-<project number>.<location>.gke.goog). GKE gives every
// cluster one ("Always present", whatever allowExternalTraffic says: it is
// only used as a name here, never connected to), and it carries the
// cluster's uid, so a cluster re-created under the same name gets a new one,
// while a credential rotation (new CA) or an IP rotation (new endpoint
// address) keeps it. The provider reads it back on every refresh
// (terraform-provider-google resource_container_cluster.go:
// control_plane_endpoints_config, Optional+Computed, set from
// flattenControlPlaneEndpointsConfig), so it is known in a preview of an
// existing cluster.
//
// The Kubernetes provider (pulumi-kubernetes v4 DiffConfig) replaces itself,
// and with it every resource it manages, when the identifier changes value,
// and not when the kubeconfig alone changes while the identifier stays the
// same: a new cluster gets the model again, a rotated one keeps its
// workloads. The CA hash used before changed with every credential
// rotation, which then planned to re-create the Namespace and everything
// in it (and since 4.29 a create does not adopt what exists: "namespaces
// already exists" on every `up`). Stacks that hold the old identifier move
// to this one without a replacement through the two `up`s of the README's
// "Moving to the cluster identifier that survives rotations"
// (detachClusterIdentifier): the provider replaces on a changed value, not
// on an identifier added or removed.
func ClusterIdentifier(cluster *container.Cluster) pulumi.StringOutput {
	endpoint := cluster.ControlPlaneEndpointsConfig.DnsEndpointConfig().Endpoint()
	return pulumi.All(cluster.Name, endpoint).ApplyT(func(v []any) (string, error) {
		dns, _ := v[1].(*string)
		if dns == nil || *dns == "" {
			return "", fmt.Errorf("GKE cluster %s reports no DNS endpoint (controlPlaneEndpointsConfig.dnsEndpointConfig.endpoint), which names it for the Kubernetes provider; run `pulumi refresh` to read it", v[0])
		}
		return *dns, nil
	}).(pulumi.StringOutput)
}

// nodeAccountID derives the node account id (6-30 characters) from the
// cluster name (a letter first, at most 40 characters).
func nodeAccountID(cluster string) string {
	return truncate(cluster, 23) + "-nodes"
}
