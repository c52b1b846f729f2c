// Package program is the mlops Pulumi program: continuous deployment of the
// planet classifier.
//
//	config ──► model/ read once: fingerprint, report, gate
//	             │
//	GKE:  APIs ─► registry ─► CI identity
//	             └──────────► cluster ─► k8s provider ─┐
//	      model image (tag = fingerprint) ─────────────┴─► model service
//
// With target "kubernetes", an existing cluster and registry take the place
// of everything GCP (existing_cluster.go; gke.go is the GCP side). Either way
// the fingerprint decides: same model, nothing to do; new model, one build
// and one rolling update.
//
// The components (package infra) take Args of their own; args.go maps the
// stack's configuration (internal/config) onto them.
package program

import (
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/infra"
	"github.com/planets-mlops/deploy/internal/config"
	"github.com/planets-mlops/deploy/internal/fingerprint"
)

// Program is the Pulumi program with its stack outputs. projectRoot is the
// project directory (where Pulumi.yaml is), where the model image's build
// context is staged: "" for the engine's (`pulumi up`), or an Automation API
// inline run's auto.WorkDir, which the inline runtime does not pass on while
// the docker provider resolves the staged context against it.
func Program(projectRoot string) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		outputs, err := declare(ctx, projectRoot)
		if err != nil {
			return err
		}
		for name, value := range outputs {
			ctx.Export(name, value)
		}
		return nil
	}
}

// declare declares everything and returns the stack outputs. Nothing is
// declared unless the configuration is valid and the model passes its gate.
func declare(ctx *pulumi.Context, projectRoot string) (pulumi.Map, error) {
	if projectRoot == "" {
		projectRoot = ctx.RootDirectory()
	}
	cfg, err := config.Load(ctx)
	if err != nil {
		return nil, err
	}
	// The model is read once: its fingerprint, then its own figures against
	// the gate, before anything is declared.
	model, fromDVC, err := readModel(ctx, cfg.Model, cfg.Target)
	if err != nil {
		return nil, err
	}

	var target *deployTarget
	switch cfg.Target {
	case config.TargetGKE:
		target, err = gke(ctx, cfg, fromDVC)
	case config.TargetKubernetes:
		target, err = existingCluster(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}

	image, err := infra.NewModelImage(ctx, "model-image", &infra.ModelImageArgs{
		Model:            model,
		Prebuilt:         cfg.Model.Image,
		Name:             cfg.Serve.AppName,
		Repository:       target.repository,
		RegistryServer:   target.registryServer,
		RegistryUsername: target.registryUsername,
		RegistryPassword: target.registryPassword,
		// Staged in the project root, handed to docker relative to it.
		StagingDir:  fingerprint.StagingDir,
		ProjectRoot: projectRoot,
	}, pulumi.DependsOn(target.registryReady))
	if err != nil {
		return nil, err
	}

	service, err := infra.NewModelService(ctx, "model-service",
		modelServiceArgs(cfg.Serve, image.Ref, image.Fingerprint, target.loadBalancerIP),
		pulumi.Providers(target.kubernetes))
	if err != nil {
		return nil, err
	}

	// What CI's identities may do in the cluster, applied by the admin's
	// `up` like their IAM roles.
	if target.deployUser != nil {
		if _, err := infra.NewDeployAccess(ctx, "deploy-access", &infra.DeployAccessArgs{
			Namespace:     service.Namespace.Metadata.Name().Elem(),
			NamespaceName: cfg.Serve.Namespace,
			DeployUser:    target.deployUser,
			PreviewUser:   target.previewUser,
		}, pulumi.Providers(target.kubernetes)); err != nil {
			return nil, err
		}
	}

	outputs := target.outputs
	outputs["endpoint"] = service.Endpoint
	outputs["modelFingerprint"] = image.Fingerprint
	outputs["image"] = image.Ref
	return outputs, nil
}

// deployTarget is where the model image goes and where the model runs.
type deployTarget struct {
	kubernetes       *kubernetes.Provider
	repository       pulumi.StringInput
	registryServer   pulumi.StringInput
	registryUsername pulumi.StringInput
	// registryPassword nil: the docker CLI's credentials push (ModelImageArgs).
	registryPassword pulumi.StringInput
	// registryReady is what must exist before an image can be pushed.
	registryReady []pulumi.Resource
	// deployUser and previewUser are the Kubernetes users of CI's deploy
	// and preview identities, given RBAC in the model's namespace; nil: no
	// RBAC is declared.
	deployUser, previewUser pulumi.StringInput
	// loadBalancerIP is the static address of the LoadBalancer, if any.
	loadBalancerIP pulumi.StringInput
	// outputs are the target's own stack outputs.
	outputs pulumi.Map
}
