package infra

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/proto"

	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

func declareAddress(t *testing.T, mocks *mocktest.Mocks, existing string) string {
	t.Helper()
	var ip string
	err := mocks.Run(func(ctx *pulumi.Context) error {
		address, err := NewEndpointAddress(ctx, "endpoint-address", &EndpointAddressArgs{Project: testProject, Region: "europe-west6", Existing: existing})
		if err != nil {
			return err
		}
		ip = resolve[string](t, address.IP)
		return nil
	}, map[string]string{})
	if err != nil {
		t.Fatalf("declaring: %v", err)
	}
	return ip
}

func TestTheStackReservesItsOwnAddressAndReleasesIt(t *testing.T) {
	mocks := &mocktest.Mocks{}
	ip := declareAddress(t, mocks, "")
	requireParented(t, mocks, "mlops:infra:EndpointAddress")
	address := mocks.One(t, "gcp:compute/address:Address")
	want(t, "name", address.Str("name"), "mlops-dev-endpoint")
	want(t, "region", address.Str("region"), "europe-west6")
	want(t, "project", address.Str("project"), testProject)
	want(t, "addressType", address.Str("addressType"), "EXTERNAL")
	want(t, "import id", address.ImportID, "")
	want(t, "retainOnDelete (a destroy releases it)", address.RetainOnDelete, false)
	want(t, "ip", ip, mocktest.StaticIP)
}

func TestAGivenAddressIsAdoptedAndNeverReleased(t *testing.T) {
	const id = "projects/" + testProject + "/regions/europe-west6/addresses/mlem-endpoint"
	mocks := &mocktest.Mocks{Cloud: map[string]map[string]any{id: {"address": "34.65.1.2", "name": "mlem-endpoint"}}}
	ip := declareAddress(t, mocks, "mlem-endpoint")
	address := mocks.One(t, "gcp:compute/address:Address")
	want(t, "name", address.Str("name"), "mlem-endpoint")
	want(t, "resource name (not the stack's own address's)", address.Name, "endpoint-address-adopted")
	want(t, "import id", address.ImportID, id)
	want(t, "retainOnDelete (a destroy keeps it)", address.RetainOnDelete, true)
	want(t, "ip (the one the clients call)", ip, "34.65.1.2")
}

func TestEndpointAddressNamesFollowGCERules(t *testing.T) {
	for _, tt := range []struct{ project, stack, want string }{
		{"mlops", "dev", "mlops-dev-endpoint"},
		{"mlops", "Prod_EU.1", "mlops-prod-eu-1-endpoint"},
		{"9lives", "dev", "m-9lives-dev-endpoint"},
		{"mlops", "a-very-long-stack-name-that-goes-on-and-on-and-on-for-ever", "mlops-a-very-long-stack-name-that-goes-on-and-on-and-o-endpoint"},
	} {
		got := EndpointAddressName(tt.project, tt.stack)
		want(t, tt.project+"/"+tt.stack, got, tt.want)
		if len(got) > 63 {
			t.Errorf("%q is longer than 63 characters", got)
		}
	}
}

func TestAStaticAddressGoesToTheLoadBalancer(t *testing.T) {
	var endpoint string
	mocks := declare(t, func(ctx *pulumi.Context) error {
		args := devService
		args.Image, args.Fingerprint, args.LoadBalancerIP = pulumi.String(testImage), pulumi.String("f00d"), pulumi.String("34.65.1.2")
		svc, err := NewModelService(ctx, "model-service", &args)
		if err != nil {
			return err
		}
		endpoint = resolve[string](t, svc.Endpoint)
		return nil
	})
	want(t, "spec.loadBalancerIP", mocks.One(t, "kubernetes:core/v1:Service").Str("spec.loadBalancerIP"), "34.65.1.2")
	want(t, "endpoint", endpoint, "http://34.65.1.2:8080")
}

// recordingMonitor is mocktest's monitor that also keeps every register
// request as the SDK sends it to the engine, by mocktest.Key.
type recordingMonitor struct {
	*mocktest.Mocks
	mu       sync.Mutex
	requests map[string]*pulumirpc.RegisterResourceRequest
}

func (r *recordingMonitor) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	r.mu.Lock()
	r.requests[mocktest.Key(args.TypeToken, args.Name)] = proto.Clone(args.RegisterRPC).(*pulumirpc.RegisterResourceRequest)
	r.mu.Unlock()
	return r.Mocks.NewResource(args)
}

// recordRequests runs body under recording mocks.
func recordRequests(t *testing.T, mocks *mocktest.Mocks, body pulumi.RunFunc) map[string]*pulumirpc.RegisterResourceRequest {
	t.Helper()
	rec := &recordingMonitor{Mocks: mocks, requests: map[string]*pulumirpc.RegisterResourceRequest{}}
	if err := pulumi.RunErr(body, pulumi.WithMocks("mlops", "dev", rec)); err != nil {
		t.Fatalf("declaring: %v", err)
	}
	return rec.requests
}

// The address is declared without pulumi-gcp's compute package; the engine
// must see the request the generated compute.NewAddress sends, or a stack
// that has the address would see it change (endpoint_address_sdk_test.go
// compares the two whole requests). Here: each field that decides the URN,
// the provider and the state, against a resource of the generated SDK
// declared in the same program.
func TestTheAddressIsRegisteredAsTheGeneratedSDKRegistersIt(t *testing.T) {
	const id = "projects/" + testProject + "/regions/europe-west6/addresses/mlem-endpoint"
	for _, existing := range []string{"", "mlem-endpoint"} {
		mocks := &mocktest.Mocks{Cloud: map[string]map[string]any{id: {"address": "34.65.1.2", "name": "mlem-endpoint"}}}
		requests := recordRequests(t, mocks, func(ctx *pulumi.Context) error {
			if _, err := testRepository(ctx); err != nil {
				return err
			}
			_, err := NewEndpointAddress(ctx, "endpoint-address", &EndpointAddressArgs{Project: testProject, Region: "europe-west6", Existing: existing})
			return err
		})
		name, addressName := "endpoint-address", "mlops-dev-endpoint"
		if existing != "" {
			name, addressName = "endpoint-address-adopted", existing
		}
		address := requests[mocktest.Key("gcp:compute/address:Address", name)]
		generated := requests[mocktest.Key("gcp:artifactregistry/repository:Repository", "repo")]
		component := requests[mocktest.Key("mlops:infra:EndpointAddress", "endpoint-address")]
		if address == nil || generated == nil || component == nil {
			t.Fatalf("missing requests: address %v, repository %v, component %v", address != nil, generated != nil, component != nil)
		}
		want(t, "custom", address.GetCustom(), true)
		want(t, "provider version (the generated SDK's)", address.GetVersion(), generated.GetVersion())
		want(t, "provider version is set", address.GetVersion() != "", true)
		want(t, "provider version (go.mod's)", address.GetVersion(), goModVersion(t, "github.com/pulumi/pulumi-gcp/sdk/v9"))
		want(t, "provider", address.GetProvider(), generated.GetProvider())
		want(t, "plugin download URL", address.GetPluginDownloadURL(), generated.GetPluginDownloadURL())
		want(t, "package ref", address.GetPackageRef(), generated.GetPackageRef())
		want(t, "additional secret outputs (compute.NewAddress's)", strings.Join(address.GetAdditionalSecretOutputs(), ","), "effectiveLabels,pulumiLabels")
		want(t, "accept secrets", address.GetAcceptSecrets(), generated.GetAcceptSecrets())
		want(t, "accept resources", address.GetAcceptResources(), generated.GetAcceptResources())
		want(t, "supports partial values", address.GetSupportsPartialValues(), generated.GetSupportsPartialValues())
		want(t, "parent (the component, so the URN is the same)", strings.HasSuffix(address.GetParent(), "::mlops:infra:EndpointAddress::endpoint-address"), true)
		want(t, "component is its parent", component.GetType(), "mlops:infra:EndpointAddress")
		inputs := address.GetObject().AsMap()
		wantInputs := map[string]any{"project": testProject, "region": "europe-west6", "name": addressName, "addressType": "EXTERNAL"}
		if !reflect.DeepEqual(inputs, wantInputs) {
			t.Errorf("inputs: got %v, want exactly %v", inputs, wantInputs)
		}
	}
}

// maxPackageSource is the most Go source one package of the program or its
// tests may have. The compiler's memory grows with it: pulumi-gcp's compute
// package (18 MB) took 6-7 GB alone, more than a private repository's CI
// runner has; the largest now, pulumi-gcp's container and pulumi-kubernetes'
// core/v1 (5 MB each), take about 2 GB (docs/compile-memory.md).
const maxPackageSource = 6_000_000

func TestNoPackageIsTooLargeToCompileOnASmallRunner(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", "-test", "-f", "{{if and .Dir (not .Standard)}}{{.ImportPath}}\t{{.Dir}}\t{{join .GoFiles \"\\t\"}}\t{{join .CgoFiles \"\\t\"}}{{end}}", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) < 2 {
			continue
		}
		var size int64
		for _, file := range fields[2:] {
			if file == "" {
				continue
			}
			if !filepath.IsAbs(file) {
				file = filepath.Join(fields[1], file)
			}
			info, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			size += info.Size()
		}
		if size > maxPackageSource {
			t.Errorf("%s has %.1f MB of Go source, more than %.0f MB: compiling it takes more memory than a 7 GB CI runner has (docs/compile-memory.md); declare the resource you need from it as infra/endpoint_address.go does",
				fields[0], float64(size)/1e6, float64(maxPackageSource)/1e6)
		}
	}
}

// goModVersion is the version go.mod requires of a module, without the "v".
func goModVersion(t *testing.T, module string) string {
	t.Helper()
	goMod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(goMod), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[0] == module {
			return strings.TrimPrefix(fields[1], "v")
		}
	}
	t.Fatalf("go.mod does not require %s", module)
	return ""
}
