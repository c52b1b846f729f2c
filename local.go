package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/planets-mlops/deploy/internal/localdeploy"
)

// sampleImage is the image `local` asks the model about: a held-out planet
// from the parity fixtures, so it works without the dataset.
const sampleImage = "model/testdata/parity/original_128.jpg"

// runLocal is `go run . local [-serve] [image]` (hack/local-deploy.sh): the
// model image built and pushed to a registry on 127.0.0.1, the program
// deployed for real to a throwaway local cluster with a real node, then the
// deployed pods asked once through the Service's NodePort on 127.0.0.1
// (-serve: and kept serving until Ctrl-C).
// Pulumi never passes arguments to the program, so this cannot be mistaken
// for a `pulumi up`.
func runLocal(args []string, out io.Writer) error {
	bin := os.Getenv("MLOPS_TOOLCHAIN_BIN")
	if bin == "" {
		return errors.New("set MLOPS_TOOLCHAIN_BIN first, or run hack/local-deploy.sh, which does")
	}
	hold := len(args) > 0 && args[0] == "-serve"
	if hold {
		args = args[1:]
	}
	image := sampleImage
	if len(args) > 0 {
		image = args[0]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return localdeploy.Run(ctx, localdeploy.Options{
		Program:      programIn,
		ToolchainBin: bin,
		ProjectDir:   ".",
		Image:        image,
		Hold:         hold,
		Out:          out,
		BuildLog:     os.Stderr,
	})
}
