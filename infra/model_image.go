package infra

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/config"
	"github.com/planets-mlops/deploy/internal/fingerprint"
)

// ModelImage is the model server's image, tagged with the model fingerprint
// and pushed, or a prebuilt image given in config.
//
// The fingerprint alone decides whether the image is rebuilt. pulumi-docker's
// Image hashes its build context itself, permission bits included, in its
// Check, where ignoreChanges cannot reach. So the Image never sees modelDir:
// it builds a staged copy that holds exactly the fingerprinted files with
// normalized modes, at a fixed relative path. Its context hash then moves
// exactly when the fingerprint (and so the tag) does: one build per model.
type ModelImage struct {
	pulumi.ResourceState

	// Ref is the image pinned by digest, name@sha256:...
	Ref pulumi.StringOutput
}

// ModelImageArgs are the inputs of ModelImage.
type ModelImageArgs struct {
	Model config.Model
	// Name is the image's name inside the repository.
	Name string
	// Repository is where the image is pushed, such as
	// europe-west6-docker.pkg.dev/project/mlops.
	Repository pulumi.StringInput
	// RegistryServer, RegistryUsername and RegistryPassword log in to push;
	// the password is a secret. Both empty: the host's docker credentials.
	RegistryServer   pulumi.StringInput
	RegistryUsername pulumi.StringInput
	RegistryPassword pulumi.StringInput
	// StagingDir is where the normalized build context is written, relative
	// to ProjectRoot, and the context path docker is given: relative, so
	// that it is the same on every machine.
	StagingDir string
	// ProjectRoot is the deployment's project directory (where Pulumi.yaml
	// is), which the docker provider resolves StagingDir against; "" is the
	// working directory.
	ProjectRoot string
}

// NewModelImage builds and pushes the image, unless a prebuilt one is given.
func NewModelImage(ctx *pulumi.Context, name string, args *ModelImageArgs, opts ...pulumi.ResourceOption) (*ModelImage, error) {
	c := &ModelImage{}
	if err := ctx.RegisterComponentResource("mlops:infra:ModelImage", name, c, opts...); err != nil {
		return nil, err
	}

	if args.Model.Image != "" {
		c.Ref = pulumi.String(args.Model.Image).ToStringOutput()
		return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"ref": c.Ref})
	}

	staged, err := fingerprint.Stage(context.Background(), args.Model.Dir, filepath.Join(args.ProjectRoot, args.StagingDir), args.Model.BuildInputs(), args.Model.Fingerprint)
	if err != nil {
		return nil, err
	}
	if staged != args.Model.Fingerprint {
		return nil, fmt.Errorf("model directory %s changed while the program ran (fingerprint %s, then %s); run again", args.Model.Dir, args.Model.Fingerprint, staged)
	}

	image, err := docker.NewImage(ctx, name, &docker.ImageArgs{
		ImageName: pulumi.Sprintf("%s/%s:%s", args.Repository, args.Name, args.Model.Fingerprint),
		Build: &docker.DockerBuildArgs{
			Context:        pulumi.String(filepath.ToSlash(args.StagingDir)),
			Dockerfile:     pulumi.String(filepath.ToSlash(filepath.Join(args.StagingDir, "Dockerfile"))),
			Platform:       pulumi.String(args.Model.Platform),
			BuilderVersion: docker.BuilderVersionBuilderBuildKit,
		},
		Registry: &docker.RegistryArgs{
			Server:   args.RegistryServer,
			Username: args.RegistryUsername,
			Password: pulumi.ToSecret(args.RegistryPassword).(pulumi.StringOutput),
		},
	}, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	c.Ref = image.RepoDigest
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"ref": c.Ref})
}
