package infra

import (
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func TestExistingClusterProviderTakesTheSecretKubeconfigAndContext(t *testing.T) {
	mocks := declare(t, func(ctx *pulumi.Context) error {
		_, err := NewExistingCluster(ctx, "cluster", &ExistingClusterArgs{
			Kubeconfig: pulumi.ToSecret(pulumi.String("apiVersion: v1\nkind: Config\n")).(pulumi.StringOutput),
			Context:    "kind-mlops",
		})
		return err
	})
	requireParented(t, mocks, "mlops:infra:ExistingCluster")
	provider := mocks.One(t, "pulumi:providers:kubernetes")
	want(t, "kubeconfig is secret", provider.IsSecret("kubeconfig"), true)
	want(t, "context", provider.Str("context"), "kind-mlops")
}

func TestExistingClusterWithoutKubeconfigUsesTheAmbientOne(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	mocks := declare(t, func(ctx *pulumi.Context) error {
		_, err := NewExistingCluster(ctx, "cluster", &ExistingClusterArgs{})
		return err
	})
	provider := mocks.One(t, "pulumi:providers:kubernetes")
	want(t, "kubeconfig", provider.Str("kubeconfig"), "")
	want(t, "context", provider.Str("context"), "")
}
