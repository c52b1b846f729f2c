package infra

import (
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	rbacv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/rbac/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// AccessRule is one RBAC rule: verbs on resources of one API group.
type AccessRule struct {
	APIGroup  string
	Resources []string
	Verbs     []string
}

var (
	writeVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	readVerbs  = []string{"get", "list", "watch"}
)

// ManagedKinds are the namespaced kinds ModelService declares: the deploy
// identity may write these in the model's namespace, and nothing else.
var ManagedKinds = []AccessRule{
	{APIGroup: "apps", Resources: []string{"deployments"}},
	{APIGroup: "", Resources: []string{"services"}},
	{APIGroup: "policy", Resources: []string{"poddisruptionbudgets"}},
	{APIGroup: "autoscaling", Resources: []string{"horizontalpodautoscalers"}},
}

// ObservedKinds are what the Kubernetes provider watches while it waits for
// the managed kinds to become ready (pulumi-kubernetes v4.32.0
// provider/pkg/await: a Deployment's ReplicaSets, Pods and
// PersistentVolumeClaims, a Service's Endpoints), and the core/v1 Events its
// event aggregator (await/watchers.go NewEventAggregator, started for every
// awaited object) lists and watches in the namespace to report the awaited
// object's Warning events. The provider reads Events in the core group
// only, never events.k8s.io. All read, never written. Not Secrets, not
// pods/exec or any other pod subresource.
var ObservedKinds = []AccessRule{
	{APIGroup: "apps", Resources: []string{"replicasets"}},
	{APIGroup: "", Resources: []string{"pods", "persistentvolumeclaims", "endpoints", "events"}},
}

// namespaceVerbs are what each identity may do to the model's Namespace,
// by its name alone: read it, nothing more. Its
// pod-security.kubernetes.io/enforce label is what keeps privileged and
// hostPath pods out, so whoever may update or patch the Namespace may drop
// it and run such a pod (root on a GKE Standard node): changing it, like
// creating it (RBAC cannot limit a create by name) and deleting it (which
// deletes everything in it), stays with an admin. (With resourceNames, a
// list or watch is allowed only with a matching metadata.name field
// selector: Kubernetes RBAC docs, "Referring to resources".)
var (
	deployNamespaceVerbs  = readVerbs
	previewNamespaceVerbs = readVerbs
)

// DeployRules are the deploy identity's rules in the model's namespace.
func DeployRules() []AccessRule { return withVerbs(ManagedKinds, writeVerbs, ObservedKinds) }

// PreviewRules are the preview identity's: the same kinds, read only.
func PreviewRules() []AccessRule { return withVerbs(ManagedKinds, readVerbs, ObservedKinds) }

func withVerbs(managed []AccessRule, verbs []string, observed []AccessRule) []AccessRule {
	var rules []AccessRule
	for _, r := range managed {
		rules = append(rules, AccessRule{APIGroup: r.APIGroup, Resources: r.Resources, Verbs: verbs})
	}
	for _, r := range observed {
		rules = append(rules, AccessRule{APIGroup: r.APIGroup, Resources: r.Resources, Verbs: readVerbs})
	}
	return rules
}

// DeployAccess is what CI's identities may do inside the cluster, as
// Kubernetes RBAC: the deploy identity manages the model's workloads in its
// namespace and only reads its Namespace (a change to the Namespace, its
// Pod Security label included, is an admin's: internal/planreview); the preview identity reads the same,
// changes nothing. Their Google Cloud role (roles/container.clusterViewer)
// only lets them reach the cluster; GKE authorizes every request by these
// bindings, made out to the service accounts' emails, which is the user
// name GKE gives a Google identity. The admin's `up` creates and changes
// them (the deploy identity cannot: RBAC forbids granting what one does not
// hold), as it does IAM; a CI `up` finds them unchanged and leaves them be.
type DeployAccess struct {
	pulumi.ResourceState
}

// DeployAccessArgs are the inputs of DeployAccess.
type DeployAccessArgs struct {
	// Namespace is the model's namespace, the Namespace resource's name
	// output, so that the Roles wait for it.
	Namespace pulumi.StringInput
	// NamespaceName is the same name, known when the program runs, for the
	// ClusterRoles' names and resourceNames.
	NamespaceName string
	// DeployUser and PreviewUser are the identities' Kubernetes user names.
	DeployUser, PreviewUser pulumi.StringInput
}

// NewDeployAccess declares a Role and RoleBinding in the namespace and a
// ClusterRole and ClusterRoleBinding limited to the Namespace by name, for
// each identity. Pass the cluster's provider with pulumi.Providers.
func NewDeployAccess(ctx *pulumi.Context, name string, args *DeployAccessArgs, opts ...pulumi.ResourceOption) (*DeployAccess, error) {
	c := &DeployAccess{}
	if err := ctx.RegisterComponentResource("mlops:infra:DeployAccess", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)
	for _, identity := range []struct {
		suffix         string
		user           pulumi.StringInput
		rules          []AccessRule
		namespaceVerbs []string
	}{
		{"deploy", args.DeployUser, DeployRules(), deployNamespaceVerbs},
		{"preview", args.PreviewUser, PreviewRules(), previewNamespaceVerbs},
	} {
		roleName := "mlops-" + identity.suffix
		subjects := rbacv1.SubjectArray{&rbacv1.SubjectArgs{
			Kind: pulumi.String("User"), ApiGroup: pulumi.String("rbac.authorization.k8s.io"), Name: identity.user,
		}}
		role, err := rbacv1.NewRole(ctx, name+"-"+identity.suffix, &rbacv1.RoleArgs{
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(roleName), Namespace: args.Namespace},
			Rules:    policyRules(identity.rules),
		}, parent)
		if err != nil {
			return nil, err
		}
		if _, err := rbacv1.NewRoleBinding(ctx, name+"-"+identity.suffix, &rbacv1.RoleBindingArgs{
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(roleName), Namespace: args.Namespace},
			RoleRef: &rbacv1.RoleRefArgs{
				ApiGroup: pulumi.String("rbac.authorization.k8s.io"), Kind: pulumi.String("Role"), Name: role.Metadata.Name().Elem(),
			},
			Subjects: subjects,
		}, parent); err != nil {
			return nil, err
		}
		// Cluster-scoped names are shared by every namespace: this one's.
		clusterRoleName := "mlops-" + args.NamespaceName + "-" + identity.suffix
		clusterRole, err := rbacv1.NewClusterRole(ctx, name+"-"+identity.suffix+"-namespace", &rbacv1.ClusterRoleArgs{
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(clusterRoleName)},
			Rules: rbacv1.PolicyRuleArray{&rbacv1.PolicyRuleArgs{
				ApiGroups:     pulumi.StringArray{pulumi.String("")},
				Resources:     pulumi.StringArray{pulumi.String("namespaces")},
				ResourceNames: pulumi.StringArray{pulumi.String(args.NamespaceName)},
				Verbs:         pulumi.ToStringArray(identity.namespaceVerbs),
			}},
		}, parent)
		if err != nil {
			return nil, err
		}
		if _, err := rbacv1.NewClusterRoleBinding(ctx, name+"-"+identity.suffix+"-namespace", &rbacv1.ClusterRoleBindingArgs{
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(clusterRoleName)},
			RoleRef: &rbacv1.RoleRefArgs{
				ApiGroup: pulumi.String("rbac.authorization.k8s.io"), Kind: pulumi.String("ClusterRole"), Name: clusterRole.Metadata.Name().Elem(),
			},
			Subjects: subjects,
		}, parent); err != nil {
			return nil, err
		}
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{})
}

func policyRules(rules []AccessRule) rbacv1.PolicyRuleArray {
	var out rbacv1.PolicyRuleArray
	for _, r := range rules {
		out = append(out, &rbacv1.PolicyRuleArgs{
			ApiGroups: pulumi.StringArray{pulumi.String(r.APIGroup)},
			Resources: pulumi.ToStringArray(r.Resources),
			Verbs:     pulumi.ToStringArray(r.Verbs),
		})
	}
	return out
}
