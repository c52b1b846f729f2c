// Package mocktest runs Pulumi programs and components under mocks that
// answer the way GCP, Docker and Kubernetes do, and records every resource
// and its exact inputs for the tests to assert on. Mocks stand in only for
// what cannot run here: the GCP and Docker providers (see test/e2e for
// the real engine and Kubernetes provider).
package mocktest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Realistic values the mocks answer with.
const (
	ProjectNumber = "123456789012"
	AccessToken   = "ya29.mock-access-token"
	ClusterIP     = "34.65.10.20"
	ServiceIP     = "34.65.100.7"
	// MasterVersion is the Kubernetes version of a GKE cluster.
	MasterVersion = "1.33.5-gke.1308000"
	// StaticIP is the address GCP reserves for a compute.Address.
	StaticIP = "34.65.200.9"
	// ClusterCA is the cluster CA certificate, base64, as GKE reports it.
	ClusterCA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJtb2NrCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
)

// ClusterDNSEndpoint is the DNS endpoint GKE gives a cluster: it carries the
// cluster's uid (here derived from its name and location; a re-created
// cluster gets another, see Mocks.Reported).
func ClusterDNSEndpoint(name, location string) string {
	sum := sha256.Sum256([]byte(location + "/" + name))
	return fmt.Sprintf("gke-%x-%s.%s.gke.goog", sum[:16], ProjectNumber, location)
}

// Resource is one registered resource as the engine would see it.
type Resource struct {
	Type, Name string
	Inputs     resource.PropertyMap
	Custom     bool
	// Parent and Provider are URNs / provider references, as registered.
	Parent, Provider string
	DependsOn        []string
	IgnoreChanges    []string
	// DeleteBeforeReplace and RetainOnDelete are the resource options.
	DeleteBeforeReplace, RetainOnDelete bool
	// ImportID is the id of an existing resource the program adopts.
	ImportID string
}

// Input returns the input at a dotted path such as "spec.template.metadata",
// with secrets unwrapped. Missing paths give a null value.
func (r Resource) Input(path string) resource.PropertyValue {
	v := resource.NewObjectProperty(r.Inputs)
	for _, key := range strings.Split(path, ".") {
		for v.IsSecret() {
			v = v.SecretValue().Element
		}
		if !v.IsObject() {
			return resource.NewNullProperty()
		}
		v = v.ObjectValue()[resource.PropertyKey(key)]
	}
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	return v
}

// Str is Input(path) as a string ("" when absent or not a string).
func (r Resource) Str(path string) string {
	v := r.Input(path)
	if v.IsString() {
		return v.StringValue()
	}
	return ""
}

// IsSecret tells whether the input at the top-level key is a secret.
func (r Resource) IsSecret(key string) bool {
	return r.Inputs[resource.PropertyKey(key)].IsSecret()
}

// Mocks implements pulumi.MockResourceMonitor and records what it sees.
type Mocks struct {
	// Preview runs the program as a preview does (`pulumi preview`, and the
	// first half of `pulumi up`): the engine answers a resource of the
	// stack's state with its ID and one it plans to create with an unknown
	// ID, and so do the mocks, going by InState.
	Preview bool
	// InState holds the resources already in the stack's state, by
	// "type::name" (see Key).
	InState map[string]bool
	// Cloud is what exists in GCP, by resource id as `pulumi import` takes
	// it (projects/p/locations/l/clusters/name): the lookups and imports
	// find it there, and answer "not found" otherwise.
	Cloud map[string]map[string]any
	// Reported overrides outputs the provider reports for a resource, by
	// Key (a cluster's masterVersion, say).
	Reported map[string]map[string]any
	// Denied lists the lookup functions the caller may not use, answered
	// with GCP's 403 (CI's identity cannot read IAM).
	Denied map[string]bool

	mu        sync.Mutex
	resources []Resource
	invokes   []string
}

// Key is how InState names a resource.
func Key(typ, name string) string { return typ + "::" + name }

// Resources returns every registered resource, sorted by type and name.
func (m *Mocks) Resources() []Resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.resources)
	slices.SortFunc(out, func(a, b Resource) int {
		return strings.Compare(a.Type+"\x00"+a.Name, b.Type+"\x00"+b.Name)
	})
	return out
}

// OfType returns the registered resources of one type token.
func (m *Mocks) OfType(typ string) []Resource {
	var out []Resource
	for _, r := range m.Resources() {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// One returns the only resource of a type, failing the test otherwise.
func (m *Mocks) One(t testing.TB, typ string) Resource {
	t.Helper()
	found := m.OfType(typ)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, got %d", typ, len(found))
	}
	return found[0]
}

// Invokes returns the tokens of the functions the program called.
func (m *Mocks) Invokes() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.invokes)
}

// NewResource records the resource and answers with its inputs plus the
// outputs the real provider would compute.
func (m *Mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	r := Resource{
		Type: args.TypeToken, Name: args.Name, Inputs: args.Inputs.Copy(),
		Custom: args.Custom, Provider: args.Provider,
	}
	if rpc := args.RegisterRPC; rpc != nil {
		r.Parent, r.DependsOn, r.IgnoreChanges = rpc.GetParent(), rpc.GetDependencies(), rpc.GetIgnoreChanges()
		r.DeleteBeforeReplace, r.RetainOnDelete, r.ImportID = rpc.GetDeleteBeforeReplace(), rpc.GetRetainOnDelete(), rpc.GetImportId()
	}
	m.mu.Lock()
	m.resources = append(m.resources, r)
	m.mu.Unlock()

	outputs := args.Inputs.Copy()
	for k, v := range computedOutputs(args.TypeToken, args.Name, args.Inputs) {
		outputs[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
	}
	for k, v := range m.Reported[Key(args.TypeToken, args.Name)] {
		outputs[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
	}
	if importID := args.RegisterRPC.GetImportId(); importID != "" {
		// An import reads the resource as it is.
		found, ok := m.Cloud[importID]
		if !ok {
			return "", nil, fmt.Errorf("importing %s: %s not found", args.Name, importID)
		}
		for k, v := range found {
			outputs[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
		}
		return importID, outputs, nil
	}
	if m.Preview && args.Custom && !m.InState[Key(args.TypeToken, args.Name)] {
		return "", outputs, nil // planned for creation: the ID is unknown
	}
	return args.Name + "-id", outputs, nil
}

// lookups are the read-only functions that find a resource by its id,
// with the id each one's arguments name.
var lookups = map[string]func(a resource.PropertyMap) string{
	"gcp:container/getCluster:getCluster": func(a resource.PropertyMap) string {
		return fmt.Sprintf("projects/%s/locations/%s/clusters/%s", arg(a, "project"), arg(a, "location"), arg(a, "name"))
	},
	"gcp:artifactregistry/getRepository:getRepository": func(a resource.PropertyMap) string {
		return fmt.Sprintf("projects/%s/locations/%s/repositories/%s", arg(a, "project"), arg(a, "location"), arg(a, "repositoryId"))
	},
	"gcp:serviceaccount/getAccount:getAccount": func(a resource.PropertyMap) string {
		return fmt.Sprintf("projects/%s/serviceAccounts/%s@%s.iam.gserviceaccount.com", arg(a, "project"), arg(a, "accountId"), arg(a, "project"))
	},
	"gcp:iam/getWorkloadIdentityPool:getWorkloadIdentityPool": func(a resource.PropertyMap) string {
		return fmt.Sprintf("projects/%s/locations/global/workloadIdentityPools/%s", arg(a, "project"), arg(a, "workloadIdentityPoolId"))
	},
}

func arg(a resource.PropertyMap, key string) string {
	if v := a[resource.PropertyKey(key)]; v.IsString() {
		return v.StringValue()
	}
	return ""
}

// Call answers the provider functions the program invokes.
func (m *Mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.mu.Lock()
	m.invokes = append(m.invokes, args.Token)
	m.mu.Unlock()
	switch args.Token {
	case "gcp:organizations/getClientConfig:getClientConfig":
		return resource.NewPropertyMapFromMap(map[string]any{
			"id": "mock-client-config", "accessToken": AccessToken,
			"project": "", "region": "", "zone": "", "defaultLabels": map[string]any{},
		}), nil
	case "gcp:organizations/getProject:getProject":
		return resource.NewPropertyMapFromMap(map[string]any{
			"number": ProjectNumber, "projectId": args.Args["projectId"].StringValue(),
		}), nil
	}
	if id, ok := lookups[args.Token]; ok {
		// The provider's own words: transport_tpg.HandleDataSourceNotFoundError
		// and the data sources' "%s not found".
		if m.Denied[args.Token] {
			return nil, fmt.Errorf("Error when reading or editing %s: googleapi: Error 403: Permission denied on resource (or it may not exist)., forbidden", id(args.Args))
		}
		found, ok := m.Cloud[id(args.Args)]
		if !ok {
			return nil, fmt.Errorf("%s not found", id(args.Args))
		}
		out := args.Args.Copy()
		out["id"] = resource.NewProperty(id(args.Args))
		for k, v := range found {
			out[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("mocktest: no mock for function %s", args.Token)
}

// AccountUniqueID is the uniqueId the mocks give the service account email:
// 21 digits, as GCP gives every account (a re-created one too) a new one.
func AccountUniqueID(email string) string {
	sum := sha256.Sum256([]byte(email))
	return fmt.Sprintf("1%020d", binary.BigEndian.Uint64(sum[:8]))
}

// computedOutputs are the outputs a provider computes for a resource type.
func computedOutputs(typ, name string, in resource.PropertyMap) map[string]any {
	str := func(k string) string {
		if v := in[resource.PropertyKey(k)]; v.IsString() {
			return v.StringValue()
		}
		return ""
	}
	switch typ {
	case "gcp:serviceaccount/account:Account":
		email := fmt.Sprintf("%s@%s.iam.gserviceaccount.com", str("accountId"), str("project"))
		return map[string]any{
			"email": email, "member": "serviceAccount:" + email,
			"name":     fmt.Sprintf("projects/%s/serviceAccounts/%s", str("project"), email),
			"uniqueId": AccountUniqueID(email),
		}
	case "gcp:serviceaccount/key:Key":
		return map[string]any{"privateKey": base64.StdEncoding.EncodeToString([]byte(`{"type":"service_account"}`))}
	case "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
		return map[string]any{"name": fmt.Sprintf("projects/%s/locations/global/workloadIdentityPools/%s", ProjectNumber, str("workloadIdentityPoolId"))}
	case "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider":
		return map[string]any{"name": fmt.Sprintf("projects/%s/locations/global/workloadIdentityPools/%s/providers/%s",
			ProjectNumber, str("workloadIdentityPoolId"), str("workloadIdentityPoolProviderId"))}
	case "gcp:artifactregistry/repository:Repository":
		return map[string]any{
			"name":        fmt.Sprintf("projects/%s/locations/%s/repositories/%s", str("project"), str("location"), str("repositoryId")),
			"registryUri": fmt.Sprintf("%s-docker.pkg.dev/%s/%s", str("location"), str("project"), str("repositoryId")),
		}
	case "gcp:container/cluster:Cluster":
		return map[string]any{
			"endpoint": ClusterIP, "masterVersion": MasterVersion, "masterAuth": map[string]any{"clusterCaCertificate": ClusterCA},
			"controlPlaneEndpointsConfig": map[string]any{"dnsEndpointConfig": map[string]any{"endpoint": ClusterDNSEndpoint(str("name"), str("location"))}},
		}
	case "docker:index/image:Image":
		// A pushed image's digest, different for every tag, as a registry gives.
		imageName := str("imageName")
		repo := imageName[:strings.LastIndex(imageName, ":")]
		return map[string]any{"repoDigest": fmt.Sprintf("%s@sha256:%x", repo, sha256.Sum256([]byte(imageName)))}
	case "kubernetes:core/v1:Service":
		spec := in["spec"]
		if spec.IsObject() && spec.ObjectValue()["type"].IsString() && spec.ObjectValue()["type"].StringValue() == "LoadBalancer" {
			// The address asked for, as GKE gives it; an ephemeral one otherwise.
			ip := ServiceIP
			if asked := spec.ObjectValue()["loadBalancerIP"]; asked.IsString() {
				ip = asked.StringValue()
			}
			return map[string]any{"status": map[string]any{"loadBalancer": map[string]any{"ingress": []any{map[string]any{"ip": ip}}}}}
		}
	case "gcp:compute/address:Address":
		return map[string]any{"address": StaticIP}
	}
	return nil
}

// Run runs body under the mocks with the given stack configuration
// (full keys such as "mlops:replicas"); secretKeys are set as secrets.
func (m *Mocks) Run(body pulumi.RunFunc, cfg map[string]string, secretKeys ...string) error {
	return pulumi.RunErr(body, pulumi.WithMocks("mlops", "dev", m), func(info *pulumi.RunInfo) {
		info.Config = cfg
		info.ConfigSecretKeys = secretKeys
		info.DryRun = m.Preview
	})
}

// StackConfig is the configuration of a stack as the CLI would pass it: the
// defaults declared in root/Pulumi.yaml, then root/Pulumi.<stack>.yaml, then
// overrides. An override of "" removes the key.
func StackConfig(t testing.TB, root, stack string, overrides map[string]string) map[string]string {
	t.Helper()
	project, err := workspace.LoadProject(filepath.Join(root, "Pulumi.yaml"))
	if err != nil {
		t.Fatalf("loading Pulumi.yaml: %v", err)
	}
	cfg := map[string]string{}
	for key, decl := range project.Config {
		full := key
		if !strings.Contains(key, ":") {
			full = project.Name.String() + ":" + key
		}
		switch d := decl.Default.(type) {
		case nil:
		case string:
			cfg[full] = d
		default:
			cfg[full] = fmt.Sprint(d)
		}
	}
	stackFile := "Pulumi." + stack + ".yaml"
	settings, err := workspace.LoadProjectStack(nil, project, filepath.Join(root, stackFile))
	if err != nil {
		t.Fatalf("loading %s: %v", stackFile, err)
	}
	for key, value := range settings.Config {
		v, err := value.Value(config.NopDecrypter)
		if err != nil {
			t.Fatalf("%s %s: %v", stackFile, key, err)
		}
		cfg[key.String()] = v
	}
	for key, value := range overrides {
		if value == "" {
			delete(cfg, key)
		} else {
			cfg[key] = value
		}
	}
	return cfg
}
