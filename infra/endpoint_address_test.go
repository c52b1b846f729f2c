package infra

import (
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

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
