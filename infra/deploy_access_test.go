package infra

import (
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

func declareDeployAccess(t *testing.T) *mocktest.Mocks {
	t.Helper()
	return declare(t, func(ctx *pulumi.Context) error {
		_, err := NewDeployAccess(ctx, "deploy-access", &DeployAccessArgs{
			Namespace: pulumi.String("live"), NamespaceName: "live",
			DeployUser: pulumi.String("mlops-ci@p.iam.gserviceaccount.com"), PreviewUser: pulumi.String("mlops-preview@p.iam.gserviceaccount.com"),
		})
		return err
	})
}

// rulesOf lists a role's rules as "group/resource verb,verb [names]".
func rulesOf(r mocktest.Resource) []string {
	var out []string
	for _, rule := range r.Input("rules").ArrayValue() {
		o := rule.ObjectValue()
		strs := func(key string) []string {
			var s []string
			if v := o[resource.PropertyKey(key)]; v.IsArray() {
				for _, e := range v.ArrayValue() {
					s = append(s, e.StringValue())
				}
			}
			return s
		}
		for _, group := range strs("apiGroups") {
			for _, res := range strs("resources") {
				line := group + "/" + res + " " + strings.Join(strs("verbs"), ",")
				if names := strs("resourceNames"); len(names) > 0 {
					line += " " + strings.Join(names, ",")
				}
				out = append(out, line)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestDeployAccessGrantsExactlyTheModelsKinds: the deploy identity writes
// the kinds ModelService declares in its namespace and reads what the
// provider watches (Events included); the preview identity reads the same;
// both only read the Namespace, by name. No Secrets, no pod subresources, no wildcard.
func TestDeployAccessGrantsExactlyTheModelsKinds(t *testing.T) {
	mocks := declareDeployAccess(t)
	requireParented(t, mocks, "mlops:infra:DeployAccess")
	write, read := "get,list,watch,create,update,patch,delete", "get,list,watch"
	roles := map[string]mocktest.Resource{}
	for _, typ := range []string{"kubernetes:rbac.authorization.k8s.io/v1:Role", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"} {
		for _, r := range mocks.OfType(typ) {
			roles[r.Name] = r
		}
	}
	observed := []string{"/endpoints " + read, "/events " + read, "/persistentvolumeclaims " + read, "/pods " + read, "apps/replicasets " + read}
	want := map[string][]string{
		"deploy-access-deploy": append([]string{"/services " + write, "apps/deployments " + write,
			"autoscaling/horizontalpodautoscalers " + write, "policy/poddisruptionbudgets " + write}, observed...),
		"deploy-access-preview": append([]string{"/services " + read, "apps/deployments " + read,
			"autoscaling/horizontalpodautoscalers " + read, "policy/poddisruptionbudgets " + read}, observed...),
		// Read only: whoever may update the Namespace may drop its
		// pod-security.kubernetes.io/enforce label.
		"deploy-access-deploy-namespace":  {"/namespaces " + read + " live"},
		"deploy-access-preview-namespace": {"/namespaces " + read + " live"},
	}
	if len(roles) != len(want) {
		t.Errorf("%d roles, want %d", len(roles), len(want))
	}
	for name, rules := range want {
		slices.Sort(rules)
		if got := rulesOf(roles[name]); !slices.Equal(got, rules) {
			t.Errorf("%s rules:\n  got  %s\n  want %s", name, strings.Join(got, "\n       "), strings.Join(rules, "\n       "))
		}
		for _, rule := range rulesOf(roles[name]) {
			if strings.Contains(rule, "*") || strings.Contains(rule, "secrets") || strings.Contains(rule, "pods/") {
				t.Errorf("%s grants %s", name, rule)
			}
		}
	}
	if ns := roles["deploy-access-deploy"].Str("metadata.namespace"); ns != "live" {
		t.Errorf("the deploy Role is in %q, want live", ns)
	}
	for _, typ := range []string{"kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"} {
		for _, b := range mocks.OfType(typ) {
			user := "mlops-ci@p.iam.gserviceaccount.com"
			if strings.Contains(b.Name, "preview") {
				user = "mlops-preview@p.iam.gserviceaccount.com"
			}
			subjects := b.Input("subjects").ArrayValue()
			if len(subjects) != 1 || subjects[0].ObjectValue()["kind"].StringValue() != "User" || subjects[0].ObjectValue()["name"].StringValue() != user {
				t.Errorf("%s %s binds %v, want only the user %s", typ, b.Name, subjects, user)
			}
			if ref := b.Str("roleRef.name"); ref != b.Str("metadata.name") {
				t.Errorf("%s %s refers to %q", typ, b.Name, ref)
			}
		}
	}
}
