package infra

import (
	"fmt"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/clientcmd"
)

// MinKubernetesVersion is the oldest Kubernetes the model's Deployment runs
// on: its preStop hook is a `sleep` action (no shell in the image), which
// the API server accepts from 1.30 on (PodLifecycleSleepAction, beta and on
// by default since 1.30). An older server refuses the Deployment, halfway
// through an `up`.
var MinKubernetesVersion = version.MajorMinor(1, 30)

// CheckKubernetesVersion fails when a server version such as
// "v1.29.4-gke.1043002" is older than MinKubernetesVersion.
func CheckKubernetesVersion(cluster, serverVersion string) error {
	v, err := version.ParseGeneric(serverVersion)
	if err != nil {
		return fmt.Errorf("%s reports Kubernetes version %q, which does not parse: %w", cluster, serverVersion, err)
	}
	if v.LessThan(MinKubernetesVersion) {
		return fmt.Errorf("%s runs Kubernetes %s; the model's Deployment needs %d.%d or newer "+
			"(its preStop hook is a sleep action): upgrade the cluster first, nothing was changed",
			cluster, serverVersion, MinKubernetesVersion.Major(), MinKubernetesVersion.Minor())
	}
	return nil
}

// RequireGKEVersion checks, in a preview, the version of a cluster that
// exists (its masterVersion is known then). A cluster about to be created
// gets a version of its release channel, all of which are newer.
func RequireGKEVersion(ctx *pulumi.Context, cluster *GKECluster) error {
	if !ctx.DryRun() {
		return nil
	}
	v, err := internals.UnsafeAwaitOutput(ctx.Context(), cluster.Cluster.MasterVersion)
	if err != nil {
		return err
	}
	s, ok := v.Value.(string)
	if !v.Known || !ok || s == "" {
		return nil
	}
	name, err := internals.UnsafeAwaitOutput(ctx.Context(), cluster.Cluster.Name)
	if err != nil {
		return err
	}
	return CheckKubernetesVersion(fmt.Sprintf("the GKE cluster %v", name.Value), s)
}

// RequireServerVersion asks an existing cluster for its version (GET
// /version, which any authenticated user may read) and checks it. A cluster
// that cannot be reached only gets a warning: the Kubernetes provider
// reports that itself, and a preview without a cluster still works.
func RequireServerVersion(ctx *pulumi.Context, kubeconfig pulumi.StringInput, kubeContext string) error {
	var contents *string
	if kubeconfig != nil {
		v, err := internals.UnsafeAwaitOutput(ctx.Context(), kubeconfig.ToStringOutput())
		if err != nil {
			return err
		}
		s, _ := v.Value.(string)
		contents = &s
	}
	where := "the cluster of context " + kubeContext
	if kubeContext == "" {
		where = "the cluster of the kubeconfig's current context"
	}
	serverVersion, err := ServerVersion(contents, kubeContext)
	if err != nil {
		return ctx.Log.Warn(fmt.Sprintf("could not read the Kubernetes version of %s (%v); the model's Deployment needs %d.%d or newer",
			where, err, MinKubernetesVersion.Major(), MinKubernetesVersion.Minor()), nil)
	}
	return CheckKubernetesVersion(where, serverVersion)
}

// ServerVersion is the gitVersion the API server of a kubeconfig context
// reports. A nil kubeconfig means $KUBECONFIG or ~/.kube/config, as for
// the Kubernetes provider; an empty context, the current one.
func ServerVersion(kubeconfig *string, kubeContext string) (string, error) {
	overrides := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
	var loader clientcmd.ClientConfig = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), overrides)
	if kubeconfig != nil {
		loaded, err := clientcmd.Load([]byte(*kubeconfig))
		if err != nil {
			return "", fmt.Errorf("mlops:kubeconfig does not parse: %w", err)
		}
		loader = clientcmd.NewNonInteractiveClientConfig(*loaded, kubeContext, overrides, nil)
	}
	restConfig, err := loader.ClientConfig()
	if err != nil {
		return "", err
	}
	restConfig.Timeout = 15 * time.Second
	client, err := discovery.NewDiscoveryClientForConfig(restConfig)
	if err != nil {
		return "", err
	}
	info, err := client.ServerVersion()
	if err != nil {
		return "", err
	}
	return info.GitVersion, nil
}
