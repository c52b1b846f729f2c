package infra

import (
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ExistingCluster is a Kubernetes cluster that exists already (kind,
// minikube, k3d, or any other), reached through a kubeconfig.
type ExistingCluster struct {
	pulumi.ResourceState

	// Provider deploys into the cluster.
	Provider *kubernetes.Provider
}

// ExistingClusterArgs are the inputs of ExistingCluster.
type ExistingClusterArgs struct {
	// Kubeconfig is the kubeconfig's contents, a secret; nil means the
	// ambient KUBECONFIG or ~/.kube/config.
	Kubeconfig pulumi.StringInput
	// Context is the kubeconfig context; empty means its current context.
	Context string
}

// NewExistingCluster declares the provider for the cluster. Unlike on GKE no
// cluster identifier is set: the kubeconfig is known at preview, so the
// provider itself tells when it points at another cluster and replaces
// what it must.
func NewExistingCluster(ctx *pulumi.Context, name string, args *ExistingClusterArgs, opts ...pulumi.ResourceOption) (*ExistingCluster, error) {
	c := &ExistingCluster{}
	if err := ctx.RegisterComponentResource("mlops:infra:ExistingCluster", name, c, opts...); err != nil {
		return nil, err
	}
	// Never nil: the SDK would fill a nil kubeconfig with $KUBECONFIG's
	// path, which differs between the admin's machine and CI's, so every
	// `up` from the other one would update the provider. "" makes the
	// provider load the ambient kubeconfig itself, and is the same
	// everywhere.
	kubeconfig := args.Kubeconfig
	if kubeconfig == nil {
		kubeconfig = pulumi.String("")
	}
	providerArgs := &kubernetes.ProviderArgs{Kubeconfig: kubeconfig}
	if args.Context != "" {
		providerArgs.Context = pulumi.String(args.Context)
	}
	var err error
	c.Provider, err = kubernetes.NewProvider(ctx, name+"-k8s", providerArgs, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{})
}
