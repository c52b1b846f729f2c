package infra

import (
	"slices"
	"strings"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/projects"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// RequiredAPIs are the Google APIs the rest of the program calls, so that a
// fresh project works on its first `pulumi up`.
var RequiredAPIs = []string{
	"artifactregistry.googleapis.com",
	"cloudresourcemanager.googleapis.com",
	"compute.googleapis.com",
	"container.googleapis.com",
	"iam.googleapis.com",
	"iamcredentials.googleapis.com",
	"sts.googleapis.com",
}

// ProjectAPIs enables the RequiredAPIs in a project. Declare everything else
// on GCP with pulumi.DependsOn(apis.Services).
type ProjectAPIs struct {
	pulumi.ResourceState

	// Services are the enabled APIs themselves. Depend on these, never on the
	// component: DependsOn(component) expands to the children registered at
	// that moment, and children register on their own goroutines, so some
	// services could be missing (a 403 SERVICE_DISABLED on a fresh project).
	Services []pulumi.Resource
}

// ProjectAPIsArgs are the inputs of ProjectAPIs.
type ProjectAPIsArgs struct {
	Project string
}

// NewProjectAPIs enables the APIs. They stay enabled on destroy: other things
// in the project may use them, and disabling an API can break them.
func NewProjectAPIs(ctx *pulumi.Context, name string, args *ProjectAPIsArgs, opts ...pulumi.ResourceOption) (*ProjectAPIs, error) {
	c := &ProjectAPIs{}
	if err := ctx.RegisterComponentResource("mlops:infra:ProjectAPIs", name, c, opts...); err != nil {
		return nil, err
	}
	for _, api := range RequiredAPIs {
		short := strings.TrimSuffix(api, ".googleapis.com")
		service, err := projects.NewService(ctx, name+"-"+short, &projects.ServiceArgs{
			Project:                  pulumi.String(args.Project),
			Service:                  pulumi.String(api),
			DisableOnDestroy:         pulumi.Bool(false),
			DisableDependentServices: pulumi.Bool(false),
		}, pulumi.Parent(c))
		if err != nil {
			return nil, err
		}
		c.Services = append(c.Services, service)
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{})
}

// Required makes a resource, and everything declared inside it when it is
// a component, wait for every service: each one gets the services
// themselves in its DependsOn, by an SDK transformation that children
// inherit from their parent. Every GCP resource of the program is declared
// with it, so none can be created against a disabled API.
func (c *ProjectAPIs) Required() pulumi.ResourceOption {
	return pulumi.Transformations([]pulumi.ResourceTransformation{
		func(args *pulumi.ResourceTransformationArgs) *pulumi.ResourceTransformationResult {
			return &pulumi.ResourceTransformationResult{
				Props: args.Props,
				Opts:  append(slices.Clone(args.Opts), pulumi.DependsOn(c.Services)),
			}
		},
	})
}
