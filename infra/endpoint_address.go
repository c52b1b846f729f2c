package infra

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// EndpointAddress is the regional static external IP address of the model's
// LoadBalancer Service. It belongs to the project, not to the cluster or the
// Service, so the endpoint stays the same when either is replaced.
type EndpointAddress struct {
	pulumi.ResourceState

	// Resource is the address, created by the stack or adopted.
	Resource pulumi.CustomResource
	// IP is the address itself, what the Service asks GKE for.
	IP pulumi.StringOutput
}

// EndpointAddressArgs are the inputs of EndpointAddress.
type EndpointAddressArgs struct {
	Project string
	Region  string
	// Existing names an address reserved already (mlops:loadBalancerAddress):
	// it is adopted, and kept in the project when the stack is deleted.
	// Empty means the stack reserves one of its own, named by
	// EndpointAddressName, and releases it on destroy.
	Existing string
}

// NewEndpointAddress declares the address.
func NewEndpointAddress(ctx *pulumi.Context, name string, args *EndpointAddressArgs, opts ...pulumi.ResourceOption) (*EndpointAddress, error) {
	c := &EndpointAddress{}
	if err := ctx.RegisterComponentResource("mlops:infra:EndpointAddress", name, c, opts...); err != nil {
		return nil, err
	}
	resourceName, addressName := name, args.Existing
	addressOpts := []pulumi.ResourceOption{pulumi.Parent(c)}
	if args.Existing != "" {
		// Adopted on the first run (read once, by whoever runs it; later
		// runs find it in the state and read nothing), and never released:
		// it was there before the stack and its clients may outlive it. Its
		// own resource name means that switching from the stack's address
		// to a given one adopts the given one, moves the Service to it and
		// only then releases the stack's (deletes come last).
		resourceName += "-adopted"
		addressOpts = append(addressOpts,
			pulumi.Import(pulumi.ID(AddressID(args.Project, args.Region, args.Existing))),
			pulumi.RetainOnDelete(true))
	} else {
		addressName = EndpointAddressName(ctx.Project(), ctx.Stack())
	}
	address, err := newComputeAddress(ctx, resourceName, &computeAddressArgs{
		Project:     pulumi.String(args.Project),
		Region:      pulumi.String(args.Region),
		Name:        pulumi.String(addressName),
		AddressType: pulumi.String("EXTERNAL"),
	}, addressOpts...)
	if err != nil {
		return nil, err
	}
	c.Resource = address
	c.IP = address.Address
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"ip": c.IP})
}

// AddressID is the import id of a regional address.
func AddressID(project, region, name string) string {
	return fmt.Sprintf("projects/%s/regions/%s/addresses/%s", project, region, name)
}

var notInAddressName = regexp.MustCompile(`[^a-z0-9-]+`)

// EndpointAddressName is the name of the address a stack reserves:
// <project>-<stack>-endpoint, within GCE's naming rules (a lowercase letter
// first, lowercase letters, digits and hyphens, at most 63 characters).
func EndpointAddressName(project, stack string) string {
	const suffix = "-endpoint"
	base := notInAddressName.ReplaceAllString(strings.ToLower(project+"-"+stack), "-")
	base = strings.Trim(truncate(strings.Trim(base, "-"), 63-len(suffix)), "-")
	if base == "" || base[0] < 'a' || base[0] > 'z' {
		base = "m-" + base
	}
	return strings.Trim(truncate(base, 63-len(suffix)), "-") + suffix
}

// computeAddress is pulumi-gcp's compute.Address (gcp:compute/address:Address),
// declared without pulumi-gcp's compute package. That package is generated
// code for every Compute Engine resource (18 MB of Go in v9.6.0), and
// compiling it took 6-7 GB of memory, more than a private repository's
// CI runner has (docs/compile-memory.md); the program uses one resource of
// it. The registration is the generated NewAddress's, request for request
// (endpoint_address_test.go compares them field by field, and
// endpoint_address_sdk_test.go, with -tags sdkparity, against the generated
// code itself): the same type token, inputs, provider version and secret
// outputs, so the URN and the state stay as they were and a stack that has
// the address sees no change.
type computeAddress struct {
	pulumi.CustomResourceState

	Address pulumi.StringOutput `pulumi:"address"`
}

// computeAddressArgs are the inputs this program gives an address, a subset
// of compute.AddressArgs (the generated type has every field optional; an
// unset one is not sent).
type computeAddressArgs struct {
	Project     pulumi.StringInput
	Region      pulumi.StringInput
	Name        pulumi.StringInput
	AddressType pulumi.StringInput
}

// computeAddressInputs names the inputs as the provider's schema does.
type computeAddressInputs struct {
	Project     string `pulumi:"project"`
	Region      string `pulumi:"region"`
	Name        string `pulumi:"name"`
	AddressType string `pulumi:"addressType"`
}

func (computeAddressArgs) ElementType() reflect.Type {
	return reflect.TypeOf((*computeAddressInputs)(nil)).Elem()
}

// gcpProviderVersion is the version of pulumi-gcp in go.mod, which every
// resource of its generated SDK asks the engine for (pulumi.Version, in
// the SDK's internal.PkgResourceDefaultOpts): the address must ask for the
// same, or it would get a default provider of its own instead of the one
// the program's other gcp resources share. endpoint_address_test.go fails
// when go.mod moves and this does not.
const gcpProviderVersion = "9.6.0"

func newComputeAddress(ctx *pulumi.Context, name string, args *computeAddressArgs, opts ...pulumi.ResourceOption) (*computeAddress, error) {
	// As the generated NewAddress: the provider version first (an explicit
	// option of the caller's wins), the secret outputs after the caller's.
	opts = append([]pulumi.ResourceOption{pulumi.Version(gcpProviderVersion)}, append(opts,
		pulumi.AdditionalSecretOutputs([]string{"effectiveLabels", "pulumiLabels"}))...)
	var address computeAddress
	if err := ctx.RegisterResource("gcp:compute/address:Address", name, args, &address, opts...); err != nil {
		return nil, err
	}
	return &address, nil
}
