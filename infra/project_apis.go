package infra

import (
	"strings"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/projects"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// RequiredAPIs are the Google APIs the rest of the program calls, so that a
// fresh project works on its first `pulumi up`.
var RequiredAPIs = []string{
	"artifactregistry.googleapis.com",
	"cloudresourcemanager.googleapis.com",
	"container.googleapis.com",
	"iam.googleapis.com",
	"iamcredentials.googleapis.com",
	"sts.googleapis.com",
}

// ProjectAPIs enables the RequiredAPIs in a project. Declare everything else
// on GCP with pulumi.DependsOn(apis), which waits for all of them.
type ProjectAPIs struct {
	pulumi.ResourceState
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
		if _, err := projects.NewService(ctx, name+"-"+short, &projects.ServiceArgs{
			Project:                  pulumi.String(args.Project),
			Service:                  pulumi.String(api),
			DisableOnDestroy:         pulumi.Bool(false),
			DisableDependentServices: pulumi.Bool(false),
		}, pulumi.Parent(c)); err != nil {
			return nil, err
		}
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{})
}
