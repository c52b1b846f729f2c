// The mlops Pulumi program: continuous deployment of the planet classifier
// to Kubernetes. `pulumi up` runs this binary; the program itself is
// internal/program, its components infra/. The local main job (a throwaway
// cluster on this machine) is a command of its own: cmd/local.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/planets-mlops/deploy/internal/program"
)

func main() {
	// The engine's project directory: "" (ctx.RootDirectory).
	pulumi.Run(program.Program(""))
}
