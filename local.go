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

// runLocal is `go run . local [image]` (hack/local-deploy.sh): the program
// deployed for real to a throwaway local control plane, then the model
// served and asked once. Pulumi never passes arguments to the program, so
// this cannot be mistaken for a `pulumi up`.
func runLocal(args []string, out io.Writer) error {
	bin, lib := os.Getenv("MLOPS_TOOLCHAIN_BIN"), os.Getenv("ONNXRUNTIME_LIB")
	if bin == "" || lib == "" {
		return errors.New("set MLOPS_TOOLCHAIN_BIN and ONNXRUNTIME_LIB first, or run hack/local-deploy.sh, which does")
	}
	image := sampleImage
	if len(args) > 0 {
		image = args[0]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return localdeploy.Run(ctx, localdeploy.Options{
		Program:        program,
		ToolchainBin:   bin,
		ProjectDir:     ".",
		ONNXRuntimeLib: lib,
		Image:          image,
		Out:            out,
	})
}
