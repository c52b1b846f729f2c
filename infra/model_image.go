package infra

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/fingerprint"
)

// ModelImage is the model server's image, tagged with the model fingerprint
// and pushed, or a prebuilt image pinned by digest.
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
	// Fingerprint is the model's: the pods carry it, the stack exports it.
	Fingerprint pulumi.StringOutput
}

// ModelImageArgs are the inputs of ModelImage.
type ModelImageArgs struct {
	// Model is the build context, read and fingerprinted once before
	// anything is declared (fingerprint.Read); its Inputs' platform is the
	// build's.
	Model *fingerprint.BuildContext
	// Prebuilt is an image pinned by digest to run instead of building
	// Model; "" builds.
	Prebuilt string
	// Name is the image's name inside the repository.
	Name string
	// Repository is where the image is pushed, such as
	// europe-west6-docker.pkg.dev/project/mlops.
	Repository pulumi.StringInput
	// RegistryServer is the registry's host the push authenticates to.
	RegistryServer pulumi.StringInput
	// RegistryUsername and RegistryPassword, when the password is not nil,
	// log in to push; the password is a secret. pulumi-docker keeps every
	// input of an Image in the state (its __inputs, encrypted as a secret),
	// so a password given here is stored there, readable by whoever can
	// decrypt the state. Nil: nothing is stored, and the push authenticates
	// the way `docker push` does, through the docker CLI's config and its
	// credential helpers (pulumi-docker v4 provider/image.go getRegistryAuth:
	// without both a username and a password it asks the CLI config's
	// GetAuthConfig for the registry's host), such as the one
	// `gcloud auth configure-docker <region>-docker.pkg.dev` installs.
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
	if args.Model == nil {
		// Even a prebuilt image runs a model whose fingerprint the pods carry.
		return nil, errors.New("ModelImage: Model is nil; read the model's build context with fingerprint.Read")
	}
	c := &ModelImage{}
	if err := ctx.RegisterComponentResource("mlops:infra:ModelImage", name, c, opts...); err != nil {
		return nil, err
	}

	c.Fingerprint = pulumi.String(args.Model.Fingerprint).ToStringOutput()
	if args.Prebuilt != "" {
		c.Ref = pulumi.String(args.Prebuilt).ToStringOutput()
		return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"ref": c.Ref})
	}

	// A preview fetches nothing: a model DVC tracks is staged only when an
	// image is to be built (fingerprint.BuildContext.StageWithoutFetching).
	staged := filepath.Join(args.ProjectRoot, args.StagingDir)
	if ctx.DryRun() {
		complete, err := args.Model.StageWithoutFetching(staged)
		if err != nil {
			return nil, err
		}
		if !complete {
			if err := ctx.Log.Info(fmt.Sprintf("model image: the model file DVC tracks is not staged for fingerprint %.12s, and neither the checkout nor DVC's cache (.dvc/cache) holds it; an up fetches it from the DVC remote, so this preview shows the image as changing (in CI: the cache of .dvc/cache was missed)", args.Model.Fingerprint), &pulumi.LogArgs{Resource: c}); err != nil {
				return nil, err
			}
		}
	} else if err := args.Model.Stage(staged); err != nil {
		// A model fetched from DVC that is missing or not the recorded one
		// stops here: nothing is built, pushed or rolled out.
		return nil, err
	}

	image, err := docker.NewImage(ctx, name, &docker.ImageArgs{
		ImageName: pulumi.Sprintf("%s/%s:%s", args.Repository, args.Name, args.Model.Fingerprint),
		Build: &docker.DockerBuildArgs{
			Context:        pulumi.String(filepath.ToSlash(args.StagingDir)),
			Dockerfile:     pulumi.String(filepath.ToSlash(filepath.Join(args.StagingDir, "Dockerfile"))),
			Platform:       pulumi.String(args.Model.Inputs.Platform),
			BuilderVersion: docker.BuilderVersionBuilderBuildKit,
		},
		Registry: registryLogin(args),
	}, pulumi.Parent(c))
	if err != nil {
		return nil, err
	}
	c.Ref = image.RepoDigest
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"ref": c.Ref})
}

// registryLogin is the Image's registry input: the server alone, so that
// the docker CLI's credentials push, unless a password is given.
func registryLogin(args *ModelImageArgs) *docker.RegistryArgs {
	login := &docker.RegistryArgs{Server: args.RegistryServer}
	if args.RegistryPassword != nil {
		login.Username = args.RegistryUsername
		login.Password = pulumi.ToSecret(args.RegistryPassword).(pulumi.StringOutput)
	}
	return login
}
