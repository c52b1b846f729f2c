//go:build sdkparity

// Compares the address's registration with pulumi-gcp's generated
// compute.NewAddress, which the program no longer imports: compiling the
// compute package takes 6-7 GB (docs/compile-memory.md), so this test is
// left out of the default build and run where memory allows, after every
// pulumi-gcp upgrade:
//
//	go test -tags sdkparity -run SDK ./infra/

package infra

import (
	"testing"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/compute"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/planets-mlops/deploy/internal/testenv/mocktest"
)

// generatedEndpointAddress declares the address as NewEndpointAddress did
// with the generated SDK (same component, names and options).
func generatedEndpointAddress(ctx *pulumi.Context, name, addressName string, opts ...pulumi.ResourceOption) error {
	c := &EndpointAddress{}
	if err := ctx.RegisterComponentResource("mlops:infra:EndpointAddress", name, c); err != nil {
		return err
	}
	resourceName := name
	if len(opts) > 0 {
		resourceName += "-adopted"
	}
	address, err := compute.NewAddress(ctx, resourceName, &compute.AddressArgs{
		Project:     pulumi.String(testProject),
		Region:      pulumi.String("europe-west6"),
		Name:        pulumi.String(addressName),
		AddressType: pulumi.String("EXTERNAL"),
	}, append([]pulumi.ResourceOption{pulumi.Parent(c)}, opts...)...)
	if err != nil {
		return err
	}
	return ctx.RegisterResourceOutputs(c, pulumi.Map{"ip": address.Address})
}

func TestTheAddressRegistersExactlyAsTheGeneratedSDK(t *testing.T) {
	const id = "projects/" + testProject + "/regions/europe-west6/addresses/mlem-endpoint"
	cloud := map[string]map[string]any{id: {"address": "34.65.1.2", "name": "mlem-endpoint"}}
	for _, existing := range []string{"", "mlem-endpoint"} {
		ours := recordRequests(t, &mocktest.Mocks{Cloud: cloud}, func(ctx *pulumi.Context) error {
			_, err := NewEndpointAddress(ctx, "endpoint-address", &EndpointAddressArgs{Project: testProject, Region: "europe-west6", Existing: existing})
			return err
		})
		theirs := recordRequests(t, &mocktest.Mocks{Cloud: cloud}, func(ctx *pulumi.Context) error {
			if existing == "" {
				return generatedEndpointAddress(ctx, "endpoint-address", "mlops-dev-endpoint")
			}
			return generatedEndpointAddress(ctx, "endpoint-address", existing,
				pulumi.Import(pulumi.ID(id)), pulumi.RetainOnDelete(true))
		})
		if len(ours) != len(theirs) || len(ours) != 2 {
			t.Fatalf("existing %q: %d requests, the generated SDK's %d (want 2 each)", existing, len(ours), len(theirs))
		}
		for key, want := range theirs {
			got := ours[key]
			if got == nil {
				t.Errorf("existing %q: no request for %s", existing, key)
				continue
			}
			// Where in the source the call was made differs by design.
			for _, r := range []*pulumirpc.RegisterResourceRequest{got, want} {
				r.SourcePosition, r.StackTrace, r.ParentStackTraceHandle = nil, nil, ""
			}
			if !proto.Equal(got, want) {
				t.Errorf("existing %q: %s registers\n%s\nthe generated SDK\n%s", existing, key, prototext.Format(got), prototext.Format(want))
			}
		}
	}
}
