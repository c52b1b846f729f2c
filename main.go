// The mlops program: continuous deployment of the planet classifier.
//
//	config ──► fingerprint(model/)
//	             │
//	GKE:  APIs ─► registry ─► CI identity
//	             └──────────► cluster ─► k8s provider ─┐
//	      model image (tag = fingerprint) ─────────────┴─► model service
//
// With target "kubernetes", an existing cluster and registry take the place
// of everything GCP. Either way the fingerprint decides: same model, nothing
// to do; new model, one build and one rolling update.
package main

import (
	"fmt"
	"os"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/infra"
	"github.com/planets-mlops/deploy/internal/config"
	"github.com/planets-mlops/deploy/internal/fingerprint"
	"github.com/planets-mlops/deploy/internal/modelreport"
)

func main() {
	// `go run . local` deploys to a throwaway local cluster (local.go);
	// the Pulumi engine runs the program without arguments.
	if len(os.Args) > 1 && os.Args[1] == "local" {
		if err := runLocal(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "local:", err)
			os.Exit(1)
		}
		return
	}
	pulumi.Run(program)
}

// program is the Pulumi program: it declares everything and exports the
// stack outputs. Its project root is the engine's (ctx.RootDirectory), or
// the working directory.
func program(ctx *pulumi.Context) error { return programIn("")(ctx) }

// programIn is the program for an Automation API inline run whose project
// directory (auto.WorkDir) is root: the inline runtime leaves
// ctx.RootDirectory empty, and the program's working directory is the
// caller's, while the docker provider resolves the staged build context
// against the project directory.
func programIn(root string) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		outputs, err := deployIn(ctx, root)
		if err != nil {
			return err
		}
		for name, value := range outputs {
			ctx.Export(name, value)
		}
		return nil
	}
}

// deploy declares everything and returns the stack outputs.
func deploy(ctx *pulumi.Context) (pulumi.Map, error) { return deployIn(ctx, "") }

// deployIn is deploy with the project root; "" is the engine's project root
// or the working directory.
func deployIn(ctx *pulumi.Context, root string) (pulumi.Map, error) {
	if root == "" {
		root = ctx.RootDirectory()
	}
	cfg, err := config.Load(ctx)
	if err != nil {
		return nil, err
	}
	// The model's own figures decide before anything is declared: no
	// image is pushed and no resource changes for a model whose report is
	// stale or below the stack's gate (internal/modelreport).
	if err := gateModel(ctx, cfg.Model); err != nil {
		return nil, err
	}

	var target *deployTarget
	switch cfg.Target {
	case config.TargetGKE:
		target, err = gke(ctx, cfg)
	case config.TargetKubernetes:
		target, err = existingCluster(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}

	image, err := infra.NewModelImage(ctx, "model-image", &infra.ModelImageArgs{
		Model:            cfg.Model,
		Name:             cfg.Serve.AppName,
		Repository:       target.repository,
		RegistryServer:   target.registryServer,
		RegistryUsername: target.registryUsername,
		RegistryPassword: target.registryPassword,
		// Staged in the project root, handed to docker relative to it.
		StagingDir:  fingerprint.StagingDir,
		ProjectRoot: root,
	}, pulumi.DependsOn(target.registryReady))
	if err != nil {
		return nil, err
	}

	service, err := infra.NewModelService(ctx, "model-service", &infra.ModelServiceArgs{
		Serve:          cfg.Serve,
		Image:          image.Ref,
		Fingerprint:    cfg.Model.Fingerprint,
		LoadBalancerIP: target.loadBalancerIP,
	}, pulumi.Providers(target.kubernetes))
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
	outputs["modelFingerprint"] = pulumi.String(cfg.Model.Fingerprint)
	outputs["image"] = image.Ref
	return outputs, nil
}

// gateModel reads the report of the model in cfg.Dir, checks that it is
// this model's, and holds it to the gate; it logs the figures it passed on.
func gateModel(ctx *pulumi.Context, m config.Model) error {
	report, err := modelreport.ForModel(m.Dir)
	if err != nil {
		return err
	}
	if err := m.Gate.Check(report, m.Baseline, m.BaselineName); err != nil {
		return err
	}
	against := "no baseline report given (" + config.BaselineReportEnv + "): the drop is not checked"
	if m.Baseline != nil {
		against = fmt.Sprintf("baseline %.1f%% (%s)", m.Baseline.Accuracy*100, m.BaselineName)
	}
	return ctx.Log.Info(fmt.Sprintf("model gate: %s (sha256 %.12s) passes: accuracy %.1f%% (%d/%d) on the evaluation set, mlops:minAccuracy %.1f%%, mlops:maxAccuracyDrop %.1f%%, %s",
		report.Model.File, report.Model.SHA256, report.Accuracy*100, report.Correct, report.Total, m.Gate.MinAccuracy*100, m.Gate.MaxAccuracyDrop*100, against), nil)
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

// gke declares the GCP side: APIs, registry, CI identity and cluster.
func gke(ctx *pulumi.Context, cfg *config.Config) (*deployTarget, error) {
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

	ci, err := infra.NewCIIdentity(ctx, "ci", &infra.CIIdentityArgs{
		Project:    cfg.GCP.Project,
		CI:         cfg.CI,
		Repository: registry.Repository,
	}, afterAPIs)
	if err != nil {
		return nil, err
	}

	cluster, err := infra.NewGKECluster(ctx, "cluster", &infra.GKEClusterArgs{
		GCP:        cfg.GCP,
		Repository: registry.Repository,
	}, afterAPIs)
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
	if cfg.Serve.Type == "LoadBalancer" {
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
