package program

import (
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/infra"
	"github.com/planets-mlops/deploy/internal/config"
)

// The stack's configuration, mapped onto the components' own Args: infra
// knows no configuration type, and config knows no component.

// gkeClusterArgs is the cluster the GCP settings g describe, its nodes
// pulling from repository.
func gkeClusterArgs(g config.GCP, repository *artifactregistry.Repository) *infra.GKEClusterArgs {
	args := &infra.GKEClusterArgs{
		Project:                 g.Project,
		ClusterName:             g.ClusterName,
		Zone:                    g.Zone,
		Region:                  g.Region,
		Autopilot:               g.Autopilot,
		MachineType:             g.MachineType,
		NodeCount:               g.NodeCount,
		ReleaseChannel:          g.ReleaseChannel,
		DeletionProtection:      g.DeletionProtection,
		DetachClusterIdentifier: g.DetachClusterIdentifier,
		Repository:              repository,
	}
	if g.NodeAutoscaling {
		args.NodeAutoscaling = &infra.NodeAutoscaling{MinNodes: g.MinNodes, MaxNodes: g.MaxNodes}
	}
	return args
}

// ciIdentityArgs is CI's identity in project as c describes it, pushing to
// repository.
func ciIdentityArgs(project string, c config.CI, repository *artifactregistry.Repository) *infra.CIIdentityArgs {
	return &infra.CIIdentityArgs{
		Project:                 project,
		ServiceAccountID:        c.ServiceAccountID,
		PreviewServiceAccountID: c.PreviewServiceAccountID,
		Platform:                ciPlatform(c.Platform),
		SourceRepository:        c.Repository,
		SourceRepositoryID:      c.RepositoryID,
		DefaultBranch:           c.DefaultBranch,
		GitLabURL:               c.GitLabURL,
		JSONKey:                 c.JSONKey,
		StateBucket:             c.StateBucket,
		Repository:              repository,
	}
}

// ciPlatform is the platform of mlops:ciPlatform. Both sides spell it the
// same (the setting's value names the Workload Identity provider), so the
// mapping is a conversion; args_test.go holds the two to it.
func ciPlatform(p config.CIPlatform) infra.CIPlatform { return infra.CIPlatform(p) }

// serviceType is the Service type of mlops:serviceType, which config
// accepts only as Kubernetes spells the types.
func serviceType(t string) infra.ServiceType { return infra.ServiceType(t) }

// modelServiceArgs is the model service s describes, running image, whose
// model has fingerprint, behind loadBalancerIP (nil: an ephemeral address).
func modelServiceArgs(s config.Service, image, fingerprint, loadBalancerIP pulumi.StringInput) *infra.ModelServiceArgs {
	args := &infra.ModelServiceArgs{
		Namespace: s.Namespace,
		Name:      s.AppName,
		Replicas:  s.Replicas,
		Resources: infra.Resources{
			CPURequest:    s.CPURequest,
			CPULimit:      s.CPULimit,
			MemoryRequest: s.MemoryRequest,
			MemoryLimit:   s.MemoryLimit,
		},
		ServiceType:             serviceType(s.Type),
		Port:                    s.Port,
		ProgressDeadlineSeconds: s.ProgressDeadlineSeconds,
		Image:                   image,
		Fingerprint:             fingerprint,
		LoadBalancerIP:          loadBalancerIP,
	}
	if s.Autoscaling {
		args.Autoscaling = &infra.Autoscaling{
			MinReplicas:                   s.MinReplicas,
			MaxReplicas:                   s.MaxReplicas,
			TargetCPUUtilization:          s.TargetCPUUtilization,
			ScaleDownStabilizationSeconds: s.ScaleDownStabilizationSeconds,
		}
	}
	return args
}
