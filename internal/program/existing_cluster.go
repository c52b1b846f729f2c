package program

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/infra"
	"github.com/planets-mlops/deploy/internal/config"
)

// existingCluster uses a cluster and registry that exist already.
func existingCluster(ctx *pulumi.Context, cfg *config.Config) (*deployTarget, error) {
	remote := cfg.Remote
	if err := infra.RequireServerVersion(ctx, remote.Kubeconfig, remote.KubeContext); err != nil {
		return nil, err
	}
	cluster, err := infra.NewExistingCluster(ctx, "cluster", &infra.ExistingClusterArgs{
		Kubeconfig: remote.Kubeconfig,
		Context:    remote.KubeContext,
	})
	if err != nil {
		return nil, err
	}
	target := &deployTarget{
		kubernetes:       cluster.Provider,
		repository:       pulumi.String(remote.Registry),
		registryServer:   pulumi.String(remote.RegistryServer),
		registryUsername: pulumi.String(remote.RegistryUsername),
		registryPassword: remote.RegistryPassword,
		outputs: pulumi.Map{
			"clusterName": pulumi.String(remote.KubeContext),
			"registryUrl": pulumi.String(remote.Registry),
		},
	}
	if remote.DeployUser != "" {
		target.deployUser, target.previewUser = pulumi.String(remote.DeployUser), pulumi.String(remote.PreviewUser)
	}
	return target, nil
}
