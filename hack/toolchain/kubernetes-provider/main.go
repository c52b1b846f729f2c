// Command pulumi-resource-kubernetes is the Pulumi Kubernetes resource
// provider plugin, built from the Go module proxy.
//
// Upstream's main embeds schema-embed.json, which is generated at release time
// and missing from the published module. The module does ship schema.json and
// terraform-mapping.json; hack/toolchain.sh copies them next to this file from
// the module cache before building (they are 8 MB, so they are not committed).
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema.json
var pulumiSchema []byte

//go:embed terraform-mapping.json
var terraformMapping []byte

func main() {
	// version.Version is stamped by hack/toolchain.sh with -ldflags -X so the
	// plugin reports the same version as the pinned Kubernetes SDK.
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
