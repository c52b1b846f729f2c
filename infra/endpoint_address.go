package infra

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/compute"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// EndpointAddress is the regional static external IP address of the model's
// LoadBalancer Service. It belongs to the project, not to the cluster or the
// Service, so the endpoint stays the same when either is replaced.
type EndpointAddress struct {
	pulumi.ResourceState

	// Resource is the address, created by the stack or adopted.
	Resource *compute.Address
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
	address, err := compute.NewAddress(ctx, resourceName, &compute.AddressArgs{
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
